package guard

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/flowvault/flowvault/auth"
	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/executor"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/projections"
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
	l := testutil.OpenLog(t, "")
	store := testutil.OpenStore(t)
	runner := testutil.RunProjection(t, l, store, secrets.Projection{}, projections.RunnerConfig{Stream: eventlog.Secrets.Name})
	keys, err := secrets.OpenKeys(ctx, l.JetStream(), secrets.GenerateMasterKey(), secrets.KeysOptions{Logger: testutil.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	s := secrets.New(l, store, runner, keys, secrets.Options{Logger: testutil.Logger(t)})
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
	v, _, err := s.Read(ctx, "rotated")
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
	l := testutil.OpenLog(t, "")
	store := testutil.OpenStore(t)
	runner := testutil.RunProjection(t, l, store, secrets.Projection{}, projections.RunnerConfig{Stream: eventlog.Secrets.Name})
	keys, err := secrets.OpenKeys(ctx, l.JetStream(), secrets.GenerateMasterKey(), secrets.KeysOptions{Logger: testutil.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	s := secrets.New(l, store, runner, keys, secrets.Options{Logger: testutil.Logger(t)})
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
	_, served, err := s.Read(ctx, "shared")
	if err != nil {
		t.Fatal(err)
	}
	if served.Version != writers {
		t.Fatalf("the secret is at version %d after %d writes", served.Version, writers)
	}
}
