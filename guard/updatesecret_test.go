package guard

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flowvault/flowvault/auth"
	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/executor"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/projections"
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/flowvault/flowvault/secrets"
)

// allowAll lets every principal do everything: this test is about writes,
// not access.
type allowAll struct{}

func (allowAll) Authorize(context.Context, string, auth.Access, auth.Target) (string, error) {
	return "admin", nil
}

// changedMeanwhile is a secret store whose secret another writer changes
// right after the first revision is read: between an UPDATE_SECRET's
// check and its write, as another branch of a fork may.
type changedMeanwhile struct {
	*secrets.Store
	once   sync.Once
	change func()
}

func (c *changedMeanwhile) Revision(ctx context.Context, name string) (secrets.Revision, error) {
	rev, err := c.Store.Revision(ctx, name)
	c.once.Do(c.change)
	return rev, err
}

// An UPDATE_SECRET whose secret changed between its check and its write
// checks again on the new state and writes, rather than failing the task.
func TestUpdateSecretWritesAfterAConcurrentChange(t *testing.T) {
	ctx := testutil.Context(t, 60*time.Second)
	s, _ := openStore(t, ctx)
	if _, err := s.Put(ctx, "rotated", []byte("first-value"), "admin"); err != nil {
		t.Fatal(err)
	}
	w := &changedMeanwhile{Store: s, change: func() {
		if _, err := s.Put(ctx, "rotated", []byte("other-branch-value"), "admin"); err != nil {
			t.Error(err)
		}
	}}
	task := &conductor.Task{ReferenceTaskName: "rotate", InputData: map[string]any{
		"_secrets": map[string]any{"secretKey": "rotated", "secretValue": "this-task-value"}}}
	res := UpdateSecret{Store: w, Authz: allowAll{}}.Execute(executor.WithPrincipals(ctx, []string{"admin"}), task)
	if res.Status != conductor.TaskCompleted {
		t.Fatalf("UPDATE_SECRET after a concurrent change: %s %q", res.Status, res.ReasonForIncompletion)
	}
	v, err := s.Get(ctx, "rotated")
	if err != nil {
		t.Fatal(err)
	}
	if got := string(v.Bytes()); got != "this-task-value" {
		t.Fatalf("the secret holds %q, want the task's value", got)
	}
}

// UPDATE_SECRETs of one secret at the same moment (a fork's branches,
// workflows a schedule started) all write, the last one winning: each
// retries for as long as others win before it. Three tries failed most
// of ten.
func TestUpdateSecretsAtOnceAllWrite(t *testing.T) {
	ctx := testutil.Context(t, 60*time.Second)
	s, _ := openStore(t, ctx)
	const writers = 16
	results := make([]conductor.TaskResult, writers)
	var wg sync.WaitGroup
	for i := range writers {
		wg.Go(func() {
			task := &conductor.Task{ReferenceTaskName: fmt.Sprintf("u%d", i), InputData: map[string]any{
				"_secrets": map[string]any{"secretKey": "shared", "secretValue": fmt.Sprintf("value-of-writer-%d", i)}}}
			results[i] = UpdateSecret{Store: s, Authz: allowAll{}}.Execute(executor.WithPrincipals(ctx, []string{"admin"}), task)
		})
	}
	wg.Wait()
	for i, res := range results {
		if res.Status != conductor.TaskCompleted {
			t.Errorf("writer %d: %s %q", i, res.Status, res.ReasonForIncompletion)
		}
	}
	_, version, err := s.Resolve(ctx, "shared")
	if err != nil {
		t.Fatal(err)
	}
	if version != writers {
		t.Fatalf("the secret is at version %d after %d writes", version, writers)
	}
}

// openStore is a secrets store on a fresh log.
func openStore(t *testing.T, ctx context.Context) (*secrets.Store, *eventlog.Log) {
	t.Helper()
	l := testutil.OpenLog(t, "")
	store := testutil.OpenStore(t)
	runner := testutil.RunProjection(t, l, store, secrets.Projection{}, projections.RunnerConfig{Stream: eventlog.Secrets.Name})
	keys, err := secrets.OpenKeys(ctx, l.JetStream(), secrets.GenerateMasterKey(), secrets.KeysOptions{Logger: testutil.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	return secrets.New(l, store, runner, keys, secrets.Options{Logger: testutil.Logger(t)}), l
}

// The version an UPDATE_SECRET writes names its workflow and task, for
// the audit trail to tell it from a write through the API by the same
// principal; the record holds the value sealed only.
func TestUpdateSecretRecordsItsTask(t *testing.T) {
	ctx := testutil.Context(t, 60*time.Second)
	s, l := openStore(t, ctx)
	if _, err := s.Put(ctx, "rotated", []byte("api-value-4821"), "admin"); err != nil {
		t.Fatal(err)
	}
	task := &conductor.Task{ReferenceTaskName: "rotate", WorkflowInstanceID: "wf-7", TaskID: "task-9", InputData: map[string]any{
		"_secrets": map[string]any{"secretKey": "rotated", "secretValue": "task-value-7723"}}}
	res := UpdateSecret{Store: s, Authz: allowAll{}}.Execute(executor.WithPrincipals(ctx, []string{"admin"}), task)
	if res.Status != conductor.TaskCompleted {
		t.Fatalf("UPDATE_SECRET: %s %q", res.Status, res.ReasonForIncompletion)
	}
	var puts []*schemas.SecretVersionPut
	err := l.Scan(ctx, eventlog.ScanOptions{Subject: secrets.SecretSubject("rotated")}, func(rec eventlog.Record) error {
		for _, env := range rec.Events {
			if strings.Contains(string(env.Data), "value-") {
				t.Errorf("a value in the log: %q", env.Data)
			}
			ev, err := schemas.Default.Decode(env)
			if err != nil {
				return err
			}
			if p, ok := ev.(*schemas.SecretVersionPut); ok {
				puts = append(puts, p)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(puts) != 2 {
		t.Fatalf("%d versions, want 2", len(puts))
	}
	if p := puts[0]; p.WorkflowID != "" || p.TaskID != "" {
		t.Fatalf("the API's write names workflow %q task %q", p.WorkflowID, p.TaskID)
	}
	if p := puts[1]; p.WorkflowID != "wf-7" || p.TaskID != "task-9" || p.By != "admin" {
		t.Fatalf("the task's write names workflow %q task %q by %q, want wf-7, task-9, admin", p.WorkflowID, p.TaskID, p.By)
	}
}

// denyUpdate refuses UPDATE and CREATE on secrets to app:mallory.
type denyUpdate struct{}

func (denyUpdate) Authorize(_ context.Context, p string, access auth.Access, t auth.Target) (string, error) {
	if p == "app:mallory" {
		return "", &auth.ForbiddenError{Principal: p, Access: access, Target: t, Reason: "no grant"}
	}
	return "admin", nil
}

// refusals keeps what Refused was given.
type refusals struct {
	mu   sync.Mutex
	keys []string
	evs  []*schemas.AccessDenied
}

func (r *refusals) Refused(addr, principal string, ev schemas.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.keys = append(r.keys, addr+"|"+principal)
	r.evs = append(r.evs, ev.(*schemas.AccessDenied))
}

// A refused UPDATE_SECRET is recorded as an API's 403 is (through the
// audit log's flood limits), naming the principal refused, the secret,
// the access, the workflow and the task; never the value.
func TestUpdateSecretRefusalIsRecorded(t *testing.T) {
	ctx := testutil.Context(t, 60*time.Second)
	s, _ := openStore(t, ctx)
	if _, err := s.Put(ctx, "deploy_key", []byte("old-value-1234"), "admin"); err != nil {
		t.Fatal(err)
	}
	rec := &refusals{}
	task := &conductor.Task{ReferenceTaskName: "rotate", WorkflowInstanceID: "wf-7", TaskID: "task-9", InputData: map[string]any{
		"_secrets": map[string]any{"secretKey": "deploy_key", "secretValue": "stolen-value-5678"}}}
	// The workflow runs as its creator and one who joined it: the
	// refusal names the latter.
	res := UpdateSecret{Store: s, Authz: denyUpdate{}, Refusals: rec}.Execute(executor.WithPrincipals(ctx, []string{"admin", "app:mallory"}), task)
	if res.Status != conductor.TaskFailedWithTerminalError || !strings.Contains(res.ReasonForIncompletion, "403") {
		t.Fatalf("UPDATE_SECRET refused: %s %q", res.Status, res.ReasonForIncompletion)
	}
	if len(rec.evs) != 1 {
		t.Fatalf("%d refusals recorded, want 1", len(rec.evs))
	}
	want := schemas.AccessDenied{Access: "UPDATE", TargetType: auth.TargetSecret, TargetID: "deploy_key", Reason: "no grant",
		By: "app:mallory", Workflow: "wf-7", Task: "task-9", Time: rec.evs[0].Time}
	if got := *rec.evs[0]; got != want || got.Time == 0 {
		t.Fatalf("refusal %+v, want %+v", got, want)
	}
	if rec.keys[0] != "principal app:mallory|app:mallory" {
		t.Fatalf("refusal limited by %q", rec.keys[0])
	}
	if got := fmt.Sprintf("%+v", rec.evs[0]); strings.Contains(got, "stolen-value") {
		t.Fatalf("the refusal holds the value: %s", got)
	}
	// Refused on a secret that does not exist yet: CREATE.
	task.InputData = map[string]any{"_secrets": map[string]any{"secretKey": "fresh", "secretValue": "v-1"}}
	UpdateSecret{Store: s, Authz: denyUpdate{}, Refusals: rec}.Execute(executor.WithPrincipals(ctx, []string{"app:mallory"}), task)
	if len(rec.evs) != 2 || rec.evs[1].Access != "CREATE" || rec.evs[1].TargetID != "fresh" {
		t.Fatalf("refusals %+v, want a second one of CREATE on fresh", rec.evs)
	}
	// Without an audit log, a refusal fails the task all the same.
	res = UpdateSecret{Store: s, Authz: denyUpdate{}}.Execute(executor.WithPrincipals(ctx, []string{"app:mallory"}), task)
	if res.Status != conductor.TaskFailedWithTerminalError {
		t.Fatalf("refused without an audit log: %s", res.Status)
	}
}

// A value that is not a string is stored as JSON writes it when it is a
// number or a boolean, as Orkes coerces it; an object or a list fails the
// task saying so, without quoting it; a missing field says it is missing.
func TestUpdateSecretValueTypes(t *testing.T) {
	ctx := testutil.Context(t, 60*time.Second)
	s, _ := openStore(t, ctx)
	for _, tt := range []struct {
		value      any
		wantStored string
		wantReason string
	}{
		{"text-value", "text-value", ""},
		{int64(123456), "123456", ""},
		{true, "true", ""},
		{map[string]any{"pw": "hunter22-inner"}, "", "_secrets.secretValue is an object, not text"},
		{[]any{"hunter22-inner"}, "", "_secrets.secretValue is a list, not text"},
		{nil, "", "needs _secrets.secretKey and _secrets.secretValue"},
	} {
		in := map[string]any{"secretKey": "typed"}
		if tt.value != nil {
			in["secretValue"] = tt.value
		}
		res := UpdateSecret{Store: s, Authz: allowAll{}}.Execute(executor.WithPrincipals(ctx, []string{"admin"}),
			&conductor.Task{ReferenceTaskName: "set", InputData: map[string]any{"_secrets": in}})
		if tt.wantReason != "" {
			if res.Status != conductor.TaskFailedWithTerminalError || !strings.Contains(res.ReasonForIncompletion, tt.wantReason) ||
				strings.Contains(res.ReasonForIncompletion, "hunter22") {
				t.Errorf("%v: %s %q, want failed with %q", tt.value, res.Status, res.ReasonForIncompletion, tt.wantReason)
			}
			continue
		}
		v, err := s.Get(ctx, "typed")
		if res.Status != conductor.TaskCompleted || err != nil || string(v.Bytes()) != tt.wantStored {
			t.Errorf("%v: %s %q, stored %v (%v), want %q", tt.value, res.Status, res.ReasonForIncompletion, v, err, tt.wantStored)
		}
	}
}

// An UPDATE_SECRET run again after it wrote (its engine killed before the
// result was recorded: the task runs again when its lease expires) does
// not write the secret again: its first run's version is the task's
// outcome. Another task, or the next retry (a new task), writes. The
// crash left a second version, by the same task, of 23 of 400 secrets
// (e2e, kill -9 in a burst of UPDATE_SECRETs; the lease is five minutes).
func TestUpdateSecretRunAgainWritesOnce(t *testing.T) {
	ctx := testutil.Context(t, 60*time.Second)
	for _, tc := range []struct {
		name         string
		second       string // the second run's task id
		wantVersions int
	}{
		{"the same task run again", "task-9", 1},
		{"another task", "task-10", 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := openStore(t, ctx)
			run := func(taskID, value string) {
				t.Helper()
				task := &conductor.Task{ReferenceTaskName: "rotate", WorkflowInstanceID: "wf-7", TaskID: taskID, InputData: map[string]any{
					"_secrets": map[string]any{"secretKey": "rotated", "secretValue": value}}}
				res := UpdateSecret{Store: s, Authz: allowAll{}}.Execute(executor.WithPrincipals(ctx, []string{"admin"}), task)
				if res.Status != conductor.TaskCompleted {
					t.Fatalf("UPDATE_SECRET: %s %q", res.Status, res.ReasonForIncompletion)
				}
			}
			run("task-9", "task-value-7723")
			run(tc.second, "task-value-7723")
			m, err := s.Metadata(ctx, "rotated")
			if err != nil {
				t.Fatal(err)
			}
			if m.Version != tc.wantVersions || len(m.Versions) != tc.wantVersions {
				t.Errorf("secret at version %d with %d versions, want %d", m.Version, len(m.Versions), tc.wantVersions)
			}
		})
	}
}

// An UPDATE_SECRET run again after it wrote and a user then deleted the
// secret completes without writing: the task did write, and the delete
// came after. Before, run again it found no live version of its own and
// created the deleted secret anew.
func TestUpdateSecretRunAgainAfterADeleteCreatesNothing(t *testing.T) {
	ctx := testutil.Context(t, 60*time.Second)
	s, l := openStore(t, ctx)
	task := &conductor.Task{ReferenceTaskName: "rotate", WorkflowInstanceID: "wf-7", TaskID: "task-9", InputData: map[string]any{
		"_secrets": map[string]any{"secretKey": "rotated", "secretValue": "task-value-7723"}}}
	run := func() {
		t.Helper()
		res := UpdateSecret{Store: s, Authz: allowAll{}}.Execute(executor.WithPrincipals(ctx, []string{"admin"}), task)
		if res.Status != conductor.TaskCompleted {
			t.Fatalf("UPDATE_SECRET: %s %q", res.Status, res.ReasonForIncompletion)
		}
	}
	run()
	if err := s.Delete(ctx, "rotated", "admin"); err != nil {
		t.Fatal(err)
	}
	run()
	if ok, err := s.Exists(ctx, "rotated"); ok || err != nil {
		t.Errorf("the deleted secret exists again (%v)", err)
	}
	recs, err := l.ReadSubject(ctx, secrets.SecretSubject("rotated"), 0)
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, r := range recs {
		for _, e := range r.Events {
			types = append(types, e.Type)
		}
	}
	if want := []string{schemas.TypeSecretVersionPut, schemas.TypeSecretDeleted}; !slices.Equal(types, want) {
		t.Errorf("the secret's log holds %v, want %v", types, want)
	}
}

// An UPDATE_SECRET whose name is refused fails saying where the name
// breaks the rule, not what it holds, whether or not the workflow's
// principals may write secrets, and records no refusal naming it: a name
// refused is often a value given in the wrong field, a secret pasted as
// its name, and the reason is shown to whoever reads the workflow, and
// logged. The reason quoted the name's first 64 characters, past what
// redaction (which looks for a whole value) would find, and a principal
// refused CREATE had the whole name in its reason and in the audit log.
func TestUpdateSecretRefusedNameIsNotQuoted(t *testing.T) {
	ctx := testutil.Context(t, 60*time.Second)
	s, _ := openStore(t, ctx)
	for _, authz := range []Authorizer{allowAll{}, denyUpdate{}} {
		for _, tt := range []struct {
			name, want string
		}{
			{"sk_live 9f2c7e4b1a8d6f3c0e5b9a2d7c4f1e8b6a3d0c5f9e2b7a4d1c8f5e3b0a6d9c2", "secret name of 71 characters is invalid at character 8"},
			{"db.password.Xq7vR2mK9pL4", "secret name of 24 characters is invalid at character 3"},
			{"token/Hk3nB8wQ5zT1", "secret name of 18 characters is invalid at character 6"},
		} {
			rec := &refusals{}
			res := UpdateSecret{Store: s, Authz: authz, Refusals: rec}.Execute(executor.WithPrincipals(ctx, []string{"app:mallory"}),
				&conductor.Task{ReferenceTaskName: "set", InputData: map[string]any{
					"_secrets": map[string]any{"secretKey": tt.name, "secretValue": "v"}}})
			if res.Status != conductor.TaskFailedWithTerminalError || !strings.Contains(res.ReasonForIncompletion, tt.want) {
				t.Errorf("%T, %d characters: %s %q, want failed saying %q", authz, len(tt.name), res.Status, res.ReasonForIncompletion, tt.want)
			}
			for i := 0; i+6 <= len(tt.name); i++ {
				if strings.Contains(res.ReasonForIncompletion, tt.name[i:i+6]) {
					t.Errorf("%T, %d characters: the reason quotes the name (%q at %d): %q", authz, len(tt.name), tt.name[i:i+6], i, res.ReasonForIncompletion)
					break
				}
			}
			if len(rec.evs) != 0 {
				t.Errorf("%T, %d characters: refusals recorded naming it: %+v", authz, len(tt.name), rec.evs)
			}
		}
	}
}
