package guard

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/masking"
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/flowvault/flowvault/secrets"
	"github.com/vmihailenco/msgpack/v5"
)

// Protect hands back the decision's own events when it changes nothing,
// so that the executor keeps the decision's state instead of folding it
// again; what it redacts goes into copies.
func TestProtectCopiesOnlyWhatItChanges(t *testing.T) {
	ctx := context.Background()
	g := New(Config{})
	before, err := engine.Apply(nil, &schemas.WorkflowStarted{WorkflowID: "wf-1", Name: "w", Version: 1,
		Def: []byte(`{"name":"w","version":1,"tasks":[]}`), Input: map[string]any{"in": "plain input"}})
	if err != nil {
		t.Fatal(err)
	}
	const secret = "resolved-secret-value"
	update := func(out string) []schemas.Event {
		return []schemas.Event{
			&schemas.TaskUpdated{TaskID: "t1", Status: "COMPLETED", Output: map[string]any{"v": out}, Time: 1},
			&schemas.TaskLogged{TaskID: "t1", Lines: []string{"a log line"}},
		}
	}

	events := update("plain output")
	dec, err := g.Protect(ctx, before, engine.Decision{Events: events})
	out := dec.Events
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != len(events) || &out[0] != &events[0] {
		t.Fatalf("events without secrets came back as a copy: %v", out)
	}

	g.memoFor("wf-1").add([]byte(secret)) // as a hand-off resolving it does
	events = update("echo " + secret)
	if dec, err = g.Protect(ctx, before, engine.Decision{Events: events}); err != nil {
		t.Fatal(err)
	}
	out = dec.Events
	if len(out) != len(events) || &out[0] == &events[0] {
		t.Fatalf("events with a resolved value came back as they were: %v", out)
	}
	if got := out[0].(*schemas.TaskUpdated).Output["v"]; got != "echo ***" {
		t.Fatalf("redacted output = %v", got)
	}
	if got := events[0].(*schemas.TaskUpdated).Output["v"]; got != "echo "+secret {
		t.Fatalf("the decision's event was modified: %v", got)
	}
	if out[1] != events[1] {
		t.Fatal("an event without the value was copied")
	}
}

// A child's idempotency key is shown, searched and indexed in plain text:
// one a resolved value reached in the decision that starts the child (a
// variable a SET_VARIABLE's result set from a secret, read before this
// pass redacts it) is refused and dropped from the start, where a plain
// key goes through as it is.
func TestChildKeyFromAResolvedValueIsRefused(t *testing.T) {
	const secret = "resolved-secret-value"
	for _, tc := range []struct {
		name, key, refused string
		startTask          string // a START_WORKFLOW's, else a SUB_WORKFLOW's start
		wantKey            string
		wantRefused        bool
	}{
		{name: "plain", key: "order-17", wantKey: "order-17"},
		{name: "the value", key: secret, wantRefused: true},
		{name: "text holding it", key: "k-" + secret, wantRefused: true},
		{name: "refused already", key: secret, refused: "no such definition", wantRefused: true},
		{name: "START_WORKFLOW, the value", key: secret, startTask: "t-start", wantRefused: true},
		{name: "START_WORKFLOW, plain", key: "order-17", startTask: "t-start", wantKey: "order-17"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			g := New(Config{})
			before, err := engine.Apply(nil, &schemas.WorkflowStarted{WorkflowID: "wf-key", Name: "w", Version: 1,
				Def: []byte(`{"name":"w","version":1,"tasks":[]}`)})
			if err != nil {
				t.Fatal(err)
			}
			g.memoFor("wf-key").add([]byte(secret)) // as a hand-off resolving it does
			eff := engine.StartWorkflow{WorkflowID: "kid", Name: "child", From: "wf-key", ParentWorkflowID: "wf-key",
				IdempotencyKey: tc.key, IdempotencyStrategy: "FAIL", Refused: tc.refused, StartTaskID: tc.startTask}
			dec, err := g.Protect(ctx, before, engine.Decision{
				Events:  []schemas.Event{&schemas.VariablesUpdated{Variables: map[string]any{"v": secret}, Time: 1}},
				Effects: []engine.Effect{eff}})
			if err != nil {
				t.Fatal(err)
			}
			got := dec.Effects[0].(engine.StartWorkflow)
			if got.IdempotencyKey != tc.wantKey || (got.Refused != "") != tc.wantRefused {
				t.Fatalf("key %q, refused %q; want key %q, refused %v", got.IdempotencyKey, got.Refused, tc.wantKey, tc.wantRefused)
			}
			if tc.refused != "" && got.Refused != tc.refused {
				t.Fatalf("refused %q, want the first reason %q kept", got.Refused, tc.refused)
			}
			if field := "subWorkflowParam."; tc.refused == "" && tc.wantRefused && tc.startTask != "" && strings.Contains(got.Refused, field) {
				t.Fatalf("a START_WORKFLOW's refusal names %s: %q", field, got.Refused)
			}
			if strings.Contains(got.Refused, secret) {
				t.Fatalf("the refusal quotes the value: %q", got.Refused)
			}
		})
	}
}

// A start is parsed for maskedFields only when its definition may name
// them; the check must never miss a spelling the decoder accepts, which
// reads a member named in another case as none of its fields.
func TestMayNameMaskedFields(t *testing.T) {
	for _, tc := range []struct {
		def  string
		want bool
	}{
		{`{"name":"w","tasks":[{"name":"t","taskReferenceName":"t"}]}`, false},
		{`{"name":"w","maskedFields":["card"]}`, true},
		{`{"name":"w","MaskedFields":["card"]}`, false},
		{`{"name":"w","MASKEDFIELDS":["card"]}`, false},
		{`{"name":"w","masked\u0046ields":["card"]}`, true},
		{`{"name":"w","maskedFields":[]}`, true},
		{`{"name":"w","maſkedFields":["card"]}`, false},
		{"{\"name\":\"w\",\"mas\u212aedFields\":[\"card\"]}", false},
		{`{"name":"w","description":"für alle","tasks":[]}`, false},
	} {
		var def conductor.WorkflowDef
		if err := conductor.Unmarshal([]byte(tc.def), &def); err != nil {
			t.Fatal(err)
		}
		if len(def.MaskedFields) > 0 && !tc.want {
			t.Fatalf("%s: the decoder reads maskedFields %v; the case says it has none", tc.def, def.MaskedFields)
		}
		if got := mayNameMaskedFields([]byte(tc.def)); got != tc.want {
			t.Errorf("mayNameMaskedFields(%s) = %v, want %v", tc.def, got, tc.want)
		}
	}
}

// A start's maskedFields are read as every later decision reads them
// (engine.Workflow.Def), by the name's exact spelling: a member named in
// another case seals nothing, at the start as after it.
func TestStartReadsMaskedFieldsExactly(t *testing.T) {
	ctx, keys := openKeys(t)
	for _, tc := range []struct {
		key    string
		sealed bool
	}{
		{"maskedFields", true},
		{"masked\\u0046ields", true},
		{"MaskedFields", false},
		{"MASKEDFIELDS", false},
	} {
		start := &schemas.WorkflowStarted{WorkflowID: "wf-mfx", Name: "w", Version: 1,
			Def:   []byte(`{"name":"w","version":1,"` + tc.key + `":["password"],"tasks":[{"name":"t","taskReferenceName":"t"}]}`),
			Input: map[string]any{"password": "masked-field-pw-Qe73"}}
		dec, err := New(Config{Keys: keys}).Protect(ctx, nil, engine.Decision{Events: []schemas.Event{start}})
		if err != nil {
			t.Fatal(err)
		}
		w, err := engine.Apply(nil, dec.Events[0])
		if err != nil {
			t.Fatal(err)
		}
		def, err := w.Def()
		if err != nil {
			t.Fatal(err)
		}
		if masking.HasSealed(w.Input) != tc.sealed || (len(def.MaskedFields) > 0) != tc.sealed {
			t.Errorf("%s: the start sealed %v, the state's definition names maskedFields %v; want %v",
				tc.key, masking.HasSealed(w.Input), def.MaskedFields, tc.sealed)
		}
	}
}

// A memo's redactor grows with the values that join it, also after it
// was first used.
func TestMemoRedactorGrows(t *testing.T) {
	m := &memo{}
	m.add([]byte("first-value"))
	if got := m.get().String("a first-value"); got != "a ***" {
		t.Fatalf("first: %q", got)
	}
	m.add([]byte("second-value"))
	m.add([]byte("first-value")) // again: changes nothing
	if got := m.get().String("first-value, second-value"); got != "***, ***" {
		t.Fatalf("grown: %q", got)
	}
}

// A redaction memo rebuilt from state (after a restart, on another engine)
// looks for every value the workflow sealed, wherever it sealed it: here a
// maskedFields input, a string or a number, which a task then echoes.
func TestRebuiltMemoFindsEverySealedValue(t *testing.T) {
	ctx, keys := openKeys(t)
	for _, tc := range []struct {
		password any
		echo     string
	}{
		{"masked-field-pw-Qe73", "masked-field-pw-Qe73"},
		{int64(918273645501), "918273645501"},
		// Opened as a float64, it was looked for as 9007199254740992.
		{int64(9007199254740993), "9007199254740993"},
	} {
		start := &schemas.WorkflowStarted{WorkflowID: "wf-mf-" + tc.echo, Name: "w", Version: 1,
			Def:   []byte(`{"name":"w","version":1,"maskedFields":["password"],"tasks":[{"name":"t","taskReferenceName":"t"}]}`),
			Input: map[string]any{"password": tc.password}}
		dec, err := New(Config{Keys: keys}).Protect(ctx, nil, engine.Decision{Events: []schemas.Event{start,
			&schemas.TaskScheduled{TaskID: "t1", Ref: "t", Name: "t", Type: "SIMPLE", Status: "SCHEDULED", Time: 1}}})
		if err != nil {
			t.Fatal(err)
		}
		var w *engine.Workflow
		for _, ev := range dec.Events {
			if w, err = engine.Apply(w, ev); err != nil {
				t.Fatal(err)
			}
		}
		if !masking.HasSealed(w.Input) {
			t.Fatalf("the maskedFields input was not sealed: %v", w.Input)
		}
		fresh := New(Config{Keys: keys}) // a restarted engine's
		dec, err = fresh.Protect(ctx, w, engine.Decision{Events: []schemas.Event{
			&schemas.TaskUpdated{TaskID: "t1", Status: "COMPLETED", Output: map[string]any{"echo": "used " + tc.echo, "copy": tc.password}, Time: 2}}})
		if err != nil {
			t.Fatal(err)
		}
		if got := dec.Events[0].(*schemas.TaskUpdated).Output; got["echo"] != "used ***" || got["copy"] != masking.Mask {
			t.Errorf("%v: output after a restart = %v", tc.password, got)
		}
	}
}

// A task configuration decided at run time (a dynamic fork's, from a
// worker's output) is redacted whole, not only its inputParameters: a
// planner may echo a resolved value anywhere in it.
func TestRunTimeConfigurationIsRedactedWhole(t *testing.T) {
	ctx := context.Background()
	g := New(Config{})
	before, err := engine.Apply(nil, &schemas.WorkflowStarted{WorkflowID: "wf-cfg", Name: "w", Version: 1,
		Def: []byte(`{"name":"w","version":1,"tasks":[]}`)})
	if err != nil {
		t.Fatal(err)
	}
	const secret = "resolved-for-the-planner-9d"
	g.memoFor("wf-cfg").add([]byte(secret))
	cfg := `{"name":"x","taskReferenceName":"x","description":"uses ` + secret + `","inputParameters":{"plain":"p"}}`
	dec, err := g.Protect(ctx, before, engine.Decision{Events: []schemas.Event{&schemas.TaskScheduled{TaskID: "t1", Ref: "x", Name: "x",
		Type: "SIMPLE", Status: "SCHEDULED", Config: []byte(cfg), Time: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	got := string(dec.Events[0].(*schemas.TaskScheduled).Config)
	if strings.Contains(got, secret) || !strings.Contains(got, `"uses ***"`) || !strings.Contains(got, `"plain":"p"`) {
		t.Fatalf("configuration %s", got)
	}
}

// A value that turns out to be secret after it was stored is masked
// backwards wherever the workflow copied it, its variables included.
func TestLateSecretMaskedInVariables(t *testing.T) {
	ctx, keys := openKeys(t)
	const value = "late-secret-value-77aa"
	w, err := engine.Apply(nil, &schemas.WorkflowStarted{WorkflowID: "wf-late", Name: "w", Version: 1,
		Def: []byte(`{"name":"w","version":1,"tasks":[]}`), Input: map[string]any{"x": value}})
	if err != nil {
		t.Fatal(err)
	}
	if w, err = engine.Apply(w, &schemas.VariablesUpdated{Variables: map[string]any{"copy": value, "other": "kept"}, Time: 1}); err != nil {
		t.Fatal(err)
	}
	dec, err := New(Config{Keys: keys}).Protect(ctx, w, engine.Decision{Events: []schemas.Event{&schemas.TaskScheduled{TaskID: "t1",
		Ref: "use", Name: "use", Type: "SIMPLE", Status: "SCHEDULED", Input: map[string]any{"_secrets": map[string]any{"p": value}}, Time: 2}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range dec.Events {
		if w, err = engine.Apply(w, ev); err != nil {
			t.Fatal(err)
		}
	}
	view := w.Conductor(false)
	if view.Input["x"] != masking.Mask || view.Variables["copy"] != masking.Mask || view.Variables["other"] != "kept" {
		t.Fatalf("input %v, variables %v", view.Input, view.Variables)
	}
}

// A value found to be secret after a dynamic fork's task was configured
// with it is marked wherever the configuration holds it, whole or within
// text: a top-level key of its inputParameters, a string elsewhere by its
// JSON pointer (in a member named as a field in another case too, which
// is not the field), or, when a member's name holds it
// (a path would spell it), the whole configuration. The task's name, which
// the engine runs the task by and every view shows, is left. The views
// then show no value, nor does the state after compaction.
func TestLateSecretMarkedWhereAForkedTasksConfigurationHoldsIt(t *testing.T) {
	ctx, keys := openKeys(t)
	const value = "late-secret-value-91zz"
	whole := []string{engine.ConfigPath("d1")}
	for _, tc := range []struct {
		name, config string // config's members besides name and taskReferenceName
		want         []string
	}{
		{"description, within text", `"description":"token ` + value + `","inputParameters":{"plain":"x"}`,
			[]string{engine.ConfigPath("d1", "description")}},
		{"inputParameters, nested", `"inputParameters":{"p":{"deep":["` + value + `"]},"plain":"x"}`,
			[]string{"task/d1" + engine.ConfigInputField + ".p"}},
		{"inputParameters, a nested member's name", `"inputParameters":{"p":{"` + value + `":1},"plain":"x"}`,
			[]string{"task/d1" + engine.ConfigInputField + ".p"}},
		{"inputParameters in another case", `"InputParameters":{"q":"` + value + `"}`,
			[]string{engine.ConfigPath("d1", "InputParameters", "q")}},
		{"name in another case", `"NAME":"` + value + `"`, []string{engine.ConfigPath("d1", "NAME")}},
		{"inline taskDefinition", `"taskDefinition":{"name":"b","description":"` + value + `","inputTemplate":{"t":"` + value + `","u":"y"}}`,
			[]string{engine.ConfigPath("d1", "taskDefinition", "description"), engine.ConfigPath("d1", "taskDefinition", "inputTemplate", "t")}},
		{"unknown field, a name with / and ~", `"notes":{"a/b~c":["x","` + value + `"]}`, []string{engine.ConfigPath("d1", "notes", "a/b~c", "1")}},
		{"a member's name", `"notes":{"` + value + `":"x"},"description":"` + value + `"`, whole},
		{"an inputParameter's name", `"inputParameters":{"` + value + `":"x"}`, whole},
		{"a top-level member's name", `"` + value + `":"x"`, whole},
		{"the task's name", `"description":"plain"`, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			name := "b"
			if tc.want == nil {
				name = value
			}
			cfg := `{"name":"` + name + `","taskReferenceName":"d1",` + tc.config + `}`
			w := applyAll(t, nil,
				&schemas.WorkflowStarted{WorkflowID: "wf-cfg", Name: "w", Version: 1,
					Def: []byte(`{"name":"w","version":1,"tasks":[{"name":"t","taskReferenceName":"t"}]}`), Input: map[string]any{"x": value}},
				&schemas.TaskScheduled{TaskID: "d1", Ref: "d1", Name: name, Type: "SIMPLE", Status: "COMPLETED", Config: []byte(cfg), Time: 1})
			dec, err := New(Config{Keys: keys}).Protect(ctx, w, engine.Decision{Events: []schemas.Event{&schemas.TaskScheduled{TaskID: "t1",
				Ref: "t", Name: "t", Type: "SIMPLE", Status: "SCHEDULED", Input: map[string]any{"_secrets": map[string]any{"p": value}}, Time: 2}}})
			if err != nil {
				t.Fatal(err)
			}
			w = applyAll(t, w, dec.Events...)
			var got []string
			for _, ev := range dec.Events {
				if m, ok := ev.(*schemas.ValuesMasked); ok {
					for _, p := range m.Shred {
						if strings.HasPrefix(p, "task/d1/") {
							got = append(got, p)
						}
					}
				}
			}
			slices.Sort(tc.want)
			if !slices.Equal(got, tc.want) {
				t.Fatalf("marked for shredding %q, want %q", got, tc.want)
			}
			view, _ := json.Marshal(w.TaskByID("d1").Conductor(w).WorkflowTask)
			if tc.want != nil && strings.Contains(string(view), value) || !strings.Contains(string(view), `"taskReferenceName":"d1"`) {
				t.Errorf("workflowTask %s", view)
			}
			if w = applyAll(t, w, &schemas.WorkflowCompacted{Time: 3}); tc.want != nil && bytes.Contains(w.TaskByID("d1").Config, []byte(value)) {
				t.Errorf("configuration after compaction %s", w.TaskByID("d1").Config)
			}
		})
	}
}

// fakeSecrets is a secret store of fixed values.
type fakeSecrets map[string]string

func (f fakeSecrets) Resolve(_ context.Context, name string) ([]byte, int, error) {
	v, ok := f[name]
	if !ok {
		return nil, 0, fault.NotFound("secret %s not found", name)
	}
	return []byte(v), 1, nil
}

// Revision and ResolveAt: its values change under no access check.
func (f fakeSecrets) Revision(context.Context, string) (secrets.Revision, error) {
	return secrets.Revision{}, nil
}

func (f fakeSecrets) ResolveAt(ctx context.Context, name string, _ secrets.Revision) ([]byte, int, error) {
	return f.Resolve(ctx, name)
}

func (f fakeSecrets) Exists(_ context.Context, name string) (bool, error) {
	_, ok := f[name]
	return ok, nil
}

// A number a task takes from a JSON secret (${workflow.secrets.acct.pin})
// is redacted like its strings: written into a string ('pin ' + $.pin,
// JavaScript's way past 2^53), or output as it is, which reads "***". A
// number below redaction's floor is left alone. So it is right after the
// hand-off, and with what redaction looks for rebuilt from the log's record
// of the resolution (a restart, another engine).
func TestSecretNumbersRedacted(t *testing.T) {
	ctx := context.Background()
	src := fakeSecrets{"acct": `{"user":"svc-account","pin":918273645501,"big":9182736455012345678,"short":4321}`}
	w, err := engine.Apply(nil, &schemas.WorkflowStarted{WorkflowID: "wf-num", Name: "w", Version: 1,
		Def: []byte(`{"name":"w","version":1,"tasks":[{"name":"calc","taskReferenceName":"calc","type":"INLINE"}]}`)})
	if err != nil {
		t.Fatal(err)
	}
	if w, err = engine.Apply(w, &schemas.TaskScheduled{TaskID: "t1", Ref: "calc", Name: "calc", Type: "INLINE", Status: "SCHEDULED",
		Input:    map[string]any{"pin": "${workflow.secrets.acct.pin}", "big": "${workflow.secrets.acct.big}", "short": "${workflow.secrets.acct.short}"},
		Deferred: [][]any{{"pin"}, {"big"}, {"short"}}, Time: 1}); err != nil {
		t.Fatal(err)
	}
	live := New(Config{Secrets: src, Authz: allowAll{}})
	in, refs, err := live.Prepare(ctx, w, w.Tasks[0])
	if err != nil || in["pin"] != int64(918273645501) {
		t.Fatalf("prepared input %v, %v", in, err)
	}
	recorded, err := engine.Apply(w, &schemas.TaskStarted{TaskID: "t1", WorkerID: "system", Time: 2, Resolved: refs})
	if err != nil {
		t.Fatal(err)
	}

	output := map[string]any{"result": "pin 918273645501", "pin": int64(918273645501), "asFloat": float64(918273645501),
		"big": "big 9182736455012346000", "short": int64(4321), "sum": "4321 + 1", "other": int64(918273645502)}
	want := map[string]any{"result": "pin ***", "pin": masking.Mask, "asFloat": masking.Mask,
		"big": "big ***", "short": int64(4321), "sum": "4321 + 1", "other": int64(918273645502)}
	for _, tc := range resolvedGuards(live, src, w, recorded) {
		dec, err := tc.g.Protect(ctx, tc.before, engine.Decision{
			Events: []schemas.Event{&schemas.TaskUpdated{TaskID: "t1", Status: "COMPLETED", Output: output, Time: 3}},
		})
		if err != nil {
			t.Fatal(err)
		}
		if got := dec.Events[0].(*schemas.TaskUpdated).Output; !reflect.DeepEqual(got, want) {
			t.Errorf("%s: output %v\nwant %v", tc.name, got, want)
		}
	}
}

// resolvedGuard is a guard that protects a task's result, and the state
// before the result.
type resolvedGuard struct {
	name   string
	g      *Guard
	before *engine.Workflow
}

// resolvedGuards are the guards that protect the result of a task whose
// secrets from src live resolved at its hand-off: live's, which knows the
// values it resolved (w is the state it handed the task off in), and a
// new one's, which finds them again from the log's record of the
// resolution (recorded, the state after the task's start), as an engine
// does after a restart or for a task another engine handed off.
func resolvedGuards(live *Guard, src fakeSecrets, w, recorded *engine.Workflow) []resolvedGuard {
	return []resolvedGuard{
		{"after the hand-off", live, w},
		{"rebuilt from the log", New(Config{Secrets: src, Authz: allowAll{}}), recorded},
	}
}

// rotatingSecret is a secret store of one secret whose value changes.
type rotatingSecret struct {
	name    string
	value   string
	version int
}

func (r *rotatingSecret) Resolve(_ context.Context, name string) ([]byte, int, error) {
	if name != r.name {
		return nil, 0, fault.NotFound("secret %s not found", name)
	}
	return []byte(r.value), r.version, nil
}

// Revision and ResolveAt: its values change under no access check.
func (r *rotatingSecret) Revision(context.Context, string) (secrets.Revision, error) {
	return secrets.Revision{}, nil
}

func (r *rotatingSecret) ResolveAt(ctx context.Context, name string, _ secrets.Revision) ([]byte, int, error) {
	return r.Resolve(ctx, name)
}

func (r *rotatingSecret) Exists(_ context.Context, name string) (bool, error) {
	return name == r.name, nil
}

// A secret overwritten while a task that took its old value runs: the old
// value is gone from the store (its key destroyed), but the task's record
// holds it sealed, so a memo rebuilt after a restart still redacts the old
// value when the worker echoes it. Compaction drops the sealed copy with
// the key.
func TestRebuiltMemoFindsAnOverwrittenSecret(t *testing.T) {
	ctx, keys := openKeys(t)
	const old, rotated = "old-token-value-5f2c9e", "new-token-value-0b7d41"
	src := &rotatingSecret{name: "token", value: old, version: 1}
	w := callingWithToken(t, "wf-rotated")
	live := New(Config{Keys: keys, Secrets: src, Authz: allowAll{}})
	in, refs, err := live.Prepare(ctx, w, w.Tasks[0])
	if err != nil || in["auth"] != "Bearer "+old {
		t.Fatalf("prepared input %v, %v", in, err)
	}
	dec, err := live.Protect(ctx, w, engine.Decision{Events: []schemas.Event{&schemas.TaskStarted{TaskID: "t1", WorkerID: "w1", Time: 2, Resolved: refs}}})
	if err != nil {
		t.Fatal(err)
	}
	recorded := w
	for _, ev := range dec.Events {
		if recorded, err = engine.Apply(recorded, ev); err != nil {
			t.Fatal(err)
		}
	}
	ref := recorded.Tasks[0].Resolved[0]
	if len(ref.Sealed) == 0 || bytes.Contains(ref.Sealed, []byte(old)) || !recorded.SealsSecrets {
		t.Fatalf("the resolved value was not sealed into the record: %+v (seals secrets: %v)", ref, recorded.SealsSecrets)
	}

	src.value, src.version = rotated, 2
	fresh := New(Config{Keys: keys, Secrets: src, Authz: allowAll{}}) // a restarted engine's
	dec, err = fresh.Protect(ctx, recorded, engine.Decision{Events: []schemas.Event{
		&schemas.TaskUpdated{TaskID: "t1", Status: "COMPLETED", Output: map[string]any{"echo": "sent Bearer " + old}, Time: 3}}})
	if err != nil {
		t.Fatal(err)
	}
	if got := dec.Events[0].(*schemas.TaskUpdated).Output["echo"]; got != "sent Bearer ***" {
		t.Fatalf("the old value after a rotation and a restart: %v", got)
	}

	// A restart, rerun or jump that drops the task keeps what it resolved:
	// a worker of the old run may still echo the value into what the
	// workflow holds next, through an engine that rebuilds its memo.
	canceled := applyAll(t, recorded, &schemas.TaskUpdated{TaskID: "t1", Status: "CANCELED", Time: 3})
	ended := applyAll(t, canceled, &schemas.WorkflowStatusChanged{Status: "TERMINATED", Time: 3})
	for _, tc := range []struct {
		name string
		from *engine.Workflow
		drop schemas.Event
	}{
		{"restart", ended, &schemas.WorkflowReset{Kind: schemas.ResetRestart, Time: 4}},
		{"rerun", ended, &schemas.WorkflowReset{Kind: schemas.ResetRerun, KeepBeforeSeq: 0, Time: 4}},
		{"jump", canceled, &schemas.WorkflowJumped{Ref: "call", Dropped: []string{"t1"}, Time: 4}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dropped := applyAll(t, tc.from, tc.drop,
				&schemas.TaskScheduled{TaskID: "t2", Ref: "call", Name: "call", Type: "SIMPLE", Status: "SCHEDULED", Seq: 1, Time: 5})
			if len(dropped.Tasks) != 1 || len(dropped.Resolved) != 1 || dropped.Resolved[0].Name != "token" {
				t.Fatalf("after the %s: tasks %d, resolved %+v", tc.name, len(dropped.Tasks), dropped.Resolved)
			}
			dec, err := New(Config{Keys: keys, Secrets: src, Authz: allowAll{}}).Protect(ctx, dropped, engine.Decision{Events: []schemas.Event{
				&schemas.TaskUpdated{TaskID: "t2", Status: "COMPLETED", Output: map[string]any{"echo": "still " + old}, Time: 6}}})
			if err != nil {
				t.Fatal(err)
			}
			if got := dec.Events[0].(*schemas.TaskUpdated).Output["echo"]; got != "still ***" {
				t.Fatalf("the old run's value, memo rebuilt after a %s: %v", tc.name, got)
			}
			if got := applyAll(t, dropped, &schemas.WorkflowCompacted{}).Resolved; len(got) != 1 || got[0].Sealed != nil {
				t.Fatalf("the dropped tasks' refs after compaction: %+v", got)
			}
		})
	}

	compacted, err := engine.Apply(recorded, &schemas.WorkflowCompacted{})
	if err != nil {
		t.Fatal(err)
	}
	if got := compacted.Tasks[0].Resolved; len(got) != 1 || got[0].Sealed != nil || got[0].Name != "token" || got[0].Version != 1 {
		t.Fatalf("refs after compaction: %+v", got)
	}
}

// What redaction looks for is plaintext: a workflow's memo goes when the
// workflow ends, and a decision on an ended workflow (a task's late log
// line) rebuilds it for that decision alone, redacting all the same.
func TestEndedWorkflowKeepsNoMemo(t *testing.T) {
	ctx, keys := openKeys(t)
	const value = "ended-workflow-secret-3c9e"
	events := []schemas.Event{
		&schemas.WorkflowStarted{WorkflowID: "wf-ended", Name: "w", Version: 1,
			Def: []byte(`{"name":"w","version":1,"tasks":[{"name":"t","taskReferenceName":"t"}]}`)},
		&schemas.TaskScheduled{TaskID: "t1", Ref: "t", Name: "t", Type: "SIMPLE", Status: "SCHEDULED", Time: 1},
		&schemas.TaskStarted{TaskID: "t1", Time: 2, Resolved: []schemas.ResolvedRef{{Kind: "secret", Name: "token", Version: 1}}},
	}
	var w *engine.Workflow
	for _, ev := range events {
		var err error
		if w, err = engine.Apply(w, ev); err != nil {
			t.Fatal(err)
		}
	}
	g := New(Config{Keys: keys, Secrets: fakeSecrets{"token": value}})
	logged := func(w *engine.Workflow) engine.Decision {
		t.Helper()
		dec, err := g.Protect(ctx, w, engine.Decision{Events: []schemas.Event{
			&schemas.TaskLogged{TaskID: "t1", Lines: []string{"sent " + value}, Times: []int64{3}}}})
		if err != nil {
			t.Fatal(err)
		}
		if line := dec.Events[0].(*schemas.TaskLogged).Lines[0]; line != "sent ***" {
			t.Fatalf("log line %q", line)
		}
		return dec
	}
	logged(w)
	if _, ok := g.memos[w.ID]; !ok {
		t.Fatal("a running workflow's memo was not kept")
	}
	dec, err := g.Protect(ctx, w, engine.Decision{Events: []schemas.Event{
		&schemas.TaskUpdated{TaskID: "t1", Status: "COMPLETED", Output: map[string]any{"echo": value}, Time: 4},
		&schemas.WorkflowStatusChanged{Status: "COMPLETED", Time: 4}}})
	if err != nil {
		t.Fatal(err)
	}
	if got := dec.Events[0].(*schemas.TaskUpdated).Output["echo"]; got != masking.Mask {
		t.Fatalf("output %v", got)
	}
	if _, ok := g.memos[w.ID]; ok {
		t.Fatal("the memo outlived the workflow's end")
	}
	for _, ev := range dec.Events {
		if w, err = engine.Apply(w, ev); err != nil {
			t.Fatal(err)
		}
	}
	logged(w)
	if _, ok := g.memos[w.ID]; ok {
		t.Fatal("a decision on an ended workflow left its memo behind")
	}
}

// An ended workflow's values leave the process, not only its memo table:
// the shared redactor built for them leaves the cache with the last
// workflow that holds it, and the bytes the memo copied are zeroed. A memo
// made after the end (a failure workflow's input prepared from the ended
// parent's) goes at the workflow's compaction.
func TestEndedWorkflowLetsGoOfItsValues(t *testing.T) {
	ctx, keys := openKeys(t)
	const value = "let-go-secret-5d1b"
	start := func(id string) *engine.Workflow {
		return applyAll(t, nil,
			&schemas.WorkflowStarted{WorkflowID: id, Name: "w", Version: 1,
				Def: []byte(`{"name":"w","version":1,"tasks":[{"name":"t","taskReferenceName":"t"}]}`)},
			&schemas.TaskScheduled{TaskID: "t1", Ref: "t", Name: "t", Type: "SIMPLE", Status: "SCHEDULED", Time: 1},
			&schemas.TaskStarted{TaskID: "t1", Time: 2, Resolved: []schemas.ResolvedRef{{Kind: "secret", Name: "token", Version: 1}}})
	}
	g := New(Config{Keys: keys, Authz: allowAll{}, Secrets: fakeSecrets{"token": value}})
	protect := func(w *engine.Workflow, events ...schemas.Event) *engine.Workflow {
		t.Helper()
		dec, err := g.Protect(ctx, w, engine.Decision{Events: events})
		if err != nil {
			t.Fatal(err)
		}
		return applyAll(t, w, dec.Events...)
	}
	logLine := &schemas.TaskLogged{TaskID: "t1", Lines: []string{"sent " + value}, Times: []int64{3}}
	end := []schemas.Event{&schemas.TaskUpdated{TaskID: "t1", Status: "COMPLETED", Time: 4},
		&schemas.WorkflowStatusChanged{Status: "COMPLETED", Time: 4}}
	a, b := start("wf-let-go-a"), start("wf-let-go-b")
	a, b = protect(a, logLine), protect(b, logLine)
	memo := g.memos[a.ID]
	shared, copied := memo.redactor, memo.values[0]
	if g.memos[b.ID].redactor != shared {
		t.Fatal("two workflows resolving the same secret do not share a redactor")
	}
	values := [][]byte{[]byte(value)}
	isShared := func() bool {
		r := masking.SharedRedactor(values)
		r.Release()
		return r == shared
	}

	protect(a, end...)
	if !isShared() {
		t.Fatal("a workflow's end took the redactor a running one holds out of the cache")
	}
	if string(copied) != strings.Repeat("\x00", len(value)) {
		t.Fatalf("the ended workflow's memo kept %q", copied)
	}
	b = protect(b, end...)
	if isShared() {
		t.Fatal("the redactor stayed in the cache once every workflow holding it had ended")
	}

	// The failure workflow b starts once it has ended resolves its input
	// as b's creator, into a memo of b's.
	if _, _, err := g.PrepareChild(ctx, engine.StartWorkflow{WorkflowID: "wf-let-go-failure", From: b.ID, CreatedBy: "admin",
		Input: map[string]any{"token": "${workflow.secrets.token}"}, InputDeferred: [][]any{{"token"}}}); err != nil {
		t.Fatal(err)
	}
	late := g.memos[b.ID]
	if late == nil || len(late.values) == 0 {
		t.Fatal("preparing the failure workflow made no memo of the parent's (the test no longer shows the case)")
	}
	copied = late.values[0]
	protect(b, &schemas.WorkflowCompacted{Time: 5})
	if _, ok := g.memos[b.ID]; ok {
		t.Fatal("a memo made after the end outlived the workflow's compaction")
	}
	if string(copied) != strings.Repeat("\x00", len(value)) {
		t.Fatalf("the compacted workflow's memo kept %q", copied)
	}
}

// An engine that prepared a hand-off of a workflow whose end another
// engine decided keeps what its redaction looked for, the secret
// resolved, until its read model folds the end and has it forget the
// workflow (executions.Projection.ForgetEnded): the shared redactor
// leaves the cache then, and a later decision there rebuilds what it
// looks for.
func TestAnotherEngineForgetsAnEndedWorkflow(t *testing.T) {
	ctx, keys := openKeys(t)
	const value = "other-engine-secret-7a2f"
	cfg := Config{Keys: keys, Authz: allowAll{}, Secrets: fakeSecrets{"token": value}}
	deciding, other := New(cfg), New(cfg)
	w := callingWithToken(t, "wf-other-engine")
	input, refs, err := other.Prepare(ctx, w, w.Tasks[0])
	if err != nil {
		t.Fatal(err)
	}
	if input["auth"] != "Bearer "+value {
		t.Fatalf("handed off %v", input)
	}
	dec, err := other.Protect(ctx, w, engine.Decision{Events: []schemas.Event{
		&schemas.TaskStarted{TaskID: "t1", Time: 2, Resolved: refs}}})
	if err != nil {
		t.Fatal(err)
	}
	w = applyAll(t, w, dec.Events...)
	r := other.memos[w.ID].redactor
	values := [][]byte{[]byte(value)}
	isShared := func() bool {
		shared := masking.SharedRedactor(values)
		shared.Release()
		return shared == r
	}
	if !isShared() {
		t.Fatal("the take's memo holds no shared redactor for the secret (the test no longer shows the case)")
	}
	end := []schemas.Event{&schemas.TaskUpdated{TaskID: "t1", Status: "COMPLETED", Time: 4},
		&schemas.WorkflowStatusChanged{Status: "COMPLETED", Time: 4}}
	if dec, err = deciding.Protect(ctx, w, engine.Decision{Events: end}); err != nil {
		t.Fatal(err)
	}
	w = applyAll(t, w, dec.Events...)
	if _, ok := other.memos[w.ID]; !ok || !isShared() {
		t.Fatal("the end another engine decided let go of this one's memo (the test no longer shows the case)")
	}
	other.Forget(w.ID)
	if _, ok := other.memos[w.ID]; ok {
		t.Fatal("the other engine kept the ended workflow's memo")
	}
	if isShared() {
		t.Fatal("the secret's redactor stayed in the cache once the workflow had ended on every engine")
	}
	dec, err = other.Protect(ctx, w, engine.Decision{Events: []schemas.Event{
		&schemas.TaskLogged{TaskID: "t1", Lines: []string{"sent " + value}, Times: []int64{5}}}})
	if err != nil {
		t.Fatal(err)
	}
	if line := dec.Events[0].(*schemas.TaskLogged).Lines[0]; line != "sent ***" {
		t.Fatalf("a late log line on the engine that forgot: %q", line)
	}
}

// forgottenWhileResolved is fakeSecrets whose resolution, the first
// time, runs forget: the read model folding the workflow's end while a
// decision on it is under way.
type forgottenWhileResolved struct {
	fakeSecrets
	once   sync.Once
	forget func()
}

func (f *forgottenWhileResolved) Resolve(ctx context.Context, name string) ([]byte, int, error) {
	f.once.Do(f.forget)
	return f.fakeSecrets.Resolve(ctx, name)
}

// A decision under way when the read model has the guard forget its
// workflow (Forget, its end folded meanwhile) still redacts, and the
// shared redactor it builds once its memo left the table is not held by
// that memo, which nothing would give it back from: it stayed in the
// cache, with the secret's forms, after the workflow had ended on every
// engine.
func TestDecisionUnderWayWhenForgottenHoldsNoRedactor(t *testing.T) {
	ctx, keys := openKeys(t)
	const value = "forgotten-meanwhile-secret-5d1c"
	const wfID = "wf-forgotten-meanwhile"
	src := &forgottenWhileResolved{fakeSecrets: fakeSecrets{"token": value}}
	g := New(Config{Keys: keys, Authz: allowAll{}, Secrets: src})
	src.forget = func() { g.Forget(wfID) }
	w := applyAll(t, callingWithToken(t, wfID),
		&schemas.TaskStarted{TaskID: "t1", Time: 2, Resolved: []schemas.ResolvedRef{{Kind: "secret", Name: "token", Version: 1}}})
	m := g.memoFor(wfID)
	dec, err := g.Protect(ctx, w, engine.Decision{Events: []schemas.Event{
		&schemas.TaskLogged{TaskID: "t1", Lines: []string{"sent " + value}, Times: []int64{3}}}})
	if err != nil {
		t.Fatal(err)
	}
	if line := dec.Events[0].(*schemas.TaskLogged).Lines[0]; line != "sent ***" {
		t.Fatalf("the decision under way when its workflow was forgotten logged %q", line)
	}
	if _, ok := g.memos[wfID]; ok || m.redactor == nil {
		t.Fatal("the workflow was not forgotten while its decision was under way (the test no longer shows the case)")
	}
	shared := masking.SharedRedactor(m.kept)
	shared.Release()
	if len(m.held) > 0 || shared == m.redactor {
		t.Fatalf("the forgotten memo holds %d shared redactors, the secret's still in the cache (%v)", len(m.held), shared == m.redactor)
	}
}

// callingWithToken is workflow id with its task t1 scheduled, its input
// referencing secret "token".
func callingWithToken(t *testing.T, id string) *engine.Workflow {
	t.Helper()
	return applyAll(t, nil,
		&schemas.WorkflowStarted{WorkflowID: id, Name: "w", Version: 1,
			Def: []byte(`{"name":"w","version":1,"tasks":[{"name":"call","taskReferenceName":"call"}]}`)},
		&schemas.TaskScheduled{TaskID: "t1", Ref: "call", Name: "call", Type: "SIMPLE", Status: "SCHEDULED",
			Input: map[string]any{"auth": "Bearer ${workflow.secrets.token}"}, Deferred: [][]any{{"auth"}}, Time: 1})
}

// applyAll folds events into a copy of w.
func applyAll(t *testing.T, w *engine.Workflow, events ...schemas.Event) *engine.Workflow {
	t.Helper()
	if w != nil {
		w = w.Clone()
	}
	for _, ev := range events {
		var err error
		if w, err = engine.Apply(w, ev); err != nil {
			t.Fatalf("apply %T: %v", ev, err)
		}
	}
	return w
}

// The decider records a result's log lines before the result: lines that
// echo what the same result puts under _secrets are redacted too, in the
// event the log holds, not only where the result's reason and output are.
func TestResultLogsRedactedAgainstItsOwnSecrets(t *testing.T) {
	ctx, keys := openKeys(t)
	const value = "token-zzz-987654"
	w := applyAll(t, nil,
		&schemas.WorkflowStarted{WorkflowID: "wf-logs", Name: "w", Version: 1,
			Def: []byte(`{"name":"w","version":1,"tasks":[{"name":"t","taskReferenceName":"t"}]}`)},
		&schemas.TaskScheduled{TaskID: "t1", Ref: "t", Name: "t", Type: "SIMPLE", Status: "SCHEDULED", Time: 1},
		&schemas.TaskStarted{TaskID: "t1", Time: 2})
	dec, err := New(Config{Keys: keys}).Protect(ctx, w, engine.Decision{Events: []schemas.Event{
		&schemas.TaskLogged{TaskID: "t1", Lines: []string{"issued " + value, "plain"}, Times: []int64{3, 3}},
		&schemas.TaskUpdated{TaskID: "t1", Status: "COMPLETED", Reason: "note " + value,
			Output: map[string]any{"_secrets": map[string]any{"k": value}, "copy": value}, Time: 3},
	}})
	if err != nil {
		t.Fatal(err)
	}
	logged := dec.Events[0].(*schemas.TaskLogged)
	if !slices.Equal(logged.Lines, []string{"issued ***", "plain"}) {
		t.Fatalf("log lines %q", logged.Lines)
	}
	if up := dec.Events[1].(*schemas.TaskUpdated); up.Reason != "note ***" || up.Output["copy"] != masking.Mask {
		t.Fatalf("reason %q, output %v", up.Reason, up.Output)
	}
}

// Reasons and log lines written before a value turned out to be secret (a
// failed attempt quoting what its retry returns under _secrets) read "***"
// from then on, in the state every read model folds.
func TestLateSecretMaskedInReasonsAndLogs(t *testing.T) {
	ctx, keys := openKeys(t)
	const value = "fresh-secret-777777"
	w := applyAll(t, nil,
		&schemas.WorkflowStarted{WorkflowID: "wf-late-text", Name: "w", Version: 1,
			Def: []byte(`{"name":"w","version":1,"tasks":[{"name":"t","taskReferenceName":"t"}]}`)},
		&schemas.TaskScheduled{TaskID: "t1", Ref: "t", Name: "t", Type: "SIMPLE", Status: "SCHEDULED", Time: 1},
		&schemas.TaskStarted{TaskID: "t1", Time: 2},
		&schemas.TaskLogged{TaskID: "t1", Lines: []string{"plain", "fetched " + value}, Times: []int64{3, 3}},
		&schemas.TaskUpdated{TaskID: "t1", Status: "FAILED", Reason: "login with " + value + " refused", Time: 4},
		&schemas.TaskScheduled{TaskID: "t2", Ref: "t", Name: "t", Type: "SIMPLE", Status: "SCHEDULED", RetryCount: 1, Time: 5},
		&schemas.TaskStarted{TaskID: "t2", Time: 6})
	dec, err := New(Config{Keys: keys}).Protect(ctx, w, engine.Decision{Events: []schemas.Event{
		&schemas.TaskUpdated{TaskID: "t2", Status: "COMPLETED", Output: map[string]any{"_secrets": map[string]any{"token": value}}, Time: 7},
	}})
	if err != nil {
		t.Fatal(err)
	}
	w = applyAll(t, w, dec.Events...)
	first := w.TaskByID("t1")
	if first.Reason != masking.Mask || first.Logs[0].Log != "plain" || first.Logs[1].Log != masking.Mask {
		t.Fatalf("reason %q, logs %+v", first.Reason, first.Logs)
	}
	if view := first.Conductor(w); view.ReasonForIncompletion != masking.Mask {
		t.Fatalf("rendered reason %q", view.ReasonForIncompletion)
	}
}

// A memo that grows (a loop sealing a new token each iteration) holds the
// redactor it started with, which other workflows share, and its latest:
// the ones between go back to the cache as it grows, instead of one a
// value for the workflow's life.
func TestGrowingMemoHoldsTheFirstAndTheLatestRedactor(t *testing.T) {
	m := &memo{}
	var built [][]byte
	var grown []*masking.Redactor // after each value
	for i := range 6 {
		v := []byte(fmt.Sprintf("grown-memo-token-%02d-7f3a", i))
		built = append(built, v)
		m.add(v)
		grown = append(grown, m.get())
	}
	if len(m.held) != 2 {
		t.Fatalf("the memo holds %d redactors after growing 6 times; want the first and the latest", len(m.held))
	}
	first, latest := m.held[0], m.held[1]
	if latest != m.redactor {
		t.Fatal("the latest redactor held is not the one in use")
	}
	for n, want := range map[int]*masking.Redactor{1: first, 6: latest} {
		r := masking.SharedRedactor(built[:n])
		r.Release()
		if r != want {
			t.Errorf("the redactor of the first %d values left the cache while the memo holds it", n)
		}
	}
	for n := 2; n < 6; n++ {
		r := masking.SharedRedactor(built[:n])
		r.Release()
		if r == grown[n-1] {
			t.Errorf("the redactor of the first %d values stayed in the cache: the memo did not give it back as it grew", n)
		}
	}
	if got := latest.String("sent " + string(built[0]) + " " + string(built[5])); got != "sent *** ***" {
		t.Fatalf("the latest redactor gave %q", got)
	}
	m.release()
}

// A task scheduled after a decision sealed a value, whose input copies the
// value as plain data (a workflow input kept as given, read again), gets
// the copy sealed under the kind the value went under, whole text and
// all: its taker opens it, whichever hand-off it goes by, and the record
// holds no plaintext. A task the engine decides from its input (a WAIT)
// keeps it redacted, as before: the engine does not read sealed data.
func TestCopiesOfSealedValuesAreSealed(t *testing.T) {
	ctx, keys := openKeys(t)
	const secret, masked = "kept-secret-Pq72mXa", "kept-masked-Lw39zNc"
	for _, tc := range []struct {
		name     string
		rebuilt  bool // a restarted engine's guard decides the copy
		taskType string
		want     map[string]byte // key → kind sealed under; 0: redacted
	}{
		{"worker task", false, "SIMPLE", map[string]byte{"s": masking.KindSecrets, "m": masking.KindMasked, "text": masking.KindSecrets, "mtext": masking.KindMasked}},
		{"worker task, memo rebuilt", true, "SIMPLE", map[string]byte{"s": masking.KindSecrets, "m": masking.KindMasked, "text": masking.KindSecrets, "mtext": masking.KindMasked}},
		{"decided task", false, "WAIT", map[string]byte{"s": 0, "m": 0, "text": 0, "mtext": 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wfID := "wf-copies-" + strings.NewReplacer(" ", "-", ",", "").Replace(tc.name)
			g := New(Config{Keys: keys})
			start := &schemas.WorkflowStarted{WorkflowID: wfID, Name: "w", Version: 1,
				Def:   []byte(`{"name":"w","version":1,"tasks":[{"name":"t","taskReferenceName":"t"}]}`),
				Input: map[string]any{"s": secret, "m": masked}}
			seal := &schemas.TaskScheduled{TaskID: "t1", Ref: "t1", Name: "t", Type: "SIMPLE", Status: "SCHEDULED", Time: 1,
				Input: map[string]any{"_secrets": map[string]any{"s": secret}, "_masked": map[string]any{"m": masked}}}
			w := protectAndFold(ctx, t, g, nil, start, seal)
			if tc.rebuilt {
				g = New(Config{Keys: keys})
			}
			copied := &schemas.TaskScheduled{TaskID: "t2", Ref: "t2", Name: "t2", Type: tc.taskType, Status: "SCHEDULED", Time: 2,
				Input: map[string]any{"s": secret, "m": masked, "text": "Bearer " + secret + " for " + masked, "mtext": "mask " + masked, "plain": "stays-as-given"}}
			w = protectAndFold(ctx, t, g, w, copied)
			in := w.TaskByID("t2").Input
			if in["plain"] != "stays-as-given" {
				t.Errorf("plain data became %v", in["plain"])
			}
			opened, err := masking.Open(in, g.opener(ctx, w))
			if err != nil {
				t.Fatal(err)
			}
			for key, kind := range tc.want {
				sealed, isSealed := in[key].(*masking.Sealed)
				switch {
				case kind == 0 && in[key] != masking.Mask && !strings.Contains(fmt.Sprint(in[key]), masking.Mask):
					t.Errorf("%s = %v, want it redacted", key, in[key])
				case kind == 0:
				case !isSealed:
					t.Errorf("%s = %v, want it sealed", key, in[key])
				case sealed.Kind != kind:
					t.Errorf("%s sealed under kind %c, want %c", key, sealed.Kind, kind)
				case opened.(map[string]any)[key] != copied.Input[key]:
					t.Errorf("%s opens as %v, want %v", key, opened.(map[string]any)[key], copied.Input[key])
				}
			}
		})
	}
}

// protectAndFold protects events as one decision of g on before and
// returns the state they fold to.
func protectAndFold(ctx context.Context, t *testing.T, g *Guard, before *engine.Workflow, events ...schemas.Event) *engine.Workflow {
	t.Helper()
	dec, err := g.Protect(ctx, before, engine.Decision{Events: events})
	if err != nil {
		t.Fatal(err)
	}
	w := before
	if w != nil {
		w = w.Clone()
	}
	for _, ev := range dec.Events {
		if w, err = engine.Apply(w, ev); err != nil {
			t.Fatal(err)
		}
	}
	return w
}

// A value found to be secret later is marked where the workflow's data
// holds it by paths that never spell it: MaskedPaths are metadata, kept in
// the log's record, the state and the read models after compaction. A
// top-level key that holds the value, equal or within text, whether its
// own value holds it or not, marks the whole of the data it is in; a key
// deeper down, as a string would, the top-level key above it. The views
// then show the value nowhere, keys included, nor does the state after
// compaction.
func TestLateSecretMarkedByPathsThatDoNotSpellIt(t *testing.T) {
	ctx, keys := openKeys(t)
	const value = "late-secret-value-42kq"
	for _, data := range []struct {
		name string
		path string // the whole of the data
		with func(map[string]any) []schemas.Event
	}{
		{"input", "input", func(m map[string]any) []schemas.Event {
			return []schemas.Event{&schemas.WorkflowStarted{WorkflowID: "wf-key", Name: "w", Version: 1,
				Def: []byte(`{"name":"w","version":1,"tasks":[{"name":"t","taskReferenceName":"t"}]}`), Input: m}}
		}},
		{"variables", "variables", func(m map[string]any) []schemas.Event {
			return []schemas.Event{&schemas.VariablesUpdated{Variables: m, Time: 1}}
		}},
		{"a task's input", "task/d1/input", func(m map[string]any) []schemas.Event {
			return []schemas.Event{&schemas.TaskScheduled{TaskID: "d1", Ref: "d1", Name: "d", Type: "SIMPLE", Status: "SCHEDULED", Input: m, Time: 1}}
		}},
		{"a task's output", "task/d1/output", func(m map[string]any) []schemas.Event {
			return []schemas.Event{&schemas.TaskScheduled{TaskID: "d1", Ref: "d1", Name: "d", Type: "SIMPLE", Status: "SCHEDULED", Time: 1},
				&schemas.TaskUpdated{TaskID: "d1", Status: "COMPLETED", Output: m, Time: 1}}
		}},
	} {
		for _, tc := range []struct {
			name string
			m    map[string]any
			want string // after data.path: "" for the whole
		}{
			{"a key equal to the value", map[string]any{value: value, "other": "x"}, ""},
			{"a key holding it within text", map[string]any{"key " + value: value}, ""},
			{"a key holding it over plain data", map[string]any{"key-" + value: map[string]any{"p": "x"}}, ""},
			{"a nested key", map[string]any{"p": map[string]any{"a": map[string]any{value: value}}, "other": "x"}, ".p"},
			{"a nested key over plain data", map[string]any{"p": []any{map[string]any{"k-" + value: 1}}}, ".p"},
			{"a value under a plain key", map[string]any{"p": value, "other": "x"}, ".p"},
		} {
			t.Run(data.name+", "+tc.name, func(t *testing.T) {
				events := data.with(tc.m)
				if _, ok := events[0].(*schemas.WorkflowStarted); !ok {
					events = append([]schemas.Event{&schemas.WorkflowStarted{WorkflowID: "wf-key", Name: "w", Version: 1,
						Def: []byte(`{"name":"w","version":1,"tasks":[{"name":"t","taskReferenceName":"t"}]}`)}}, events...)
				}
				w := applyAll(t, nil, events...)
				dec, err := New(Config{Keys: keys}).Protect(ctx, w, engine.Decision{Events: []schemas.Event{&schemas.TaskScheduled{TaskID: "t1",
					Ref: "t", Name: "t", Type: "SIMPLE", Status: "SCHEDULED", Input: map[string]any{"_secrets": map[string]any{"p": value}}, Time: 2}}})
				if err != nil {
					t.Fatal(err)
				}
				var masked *schemas.ValuesMasked
				for _, ev := range dec.Events {
					if m, ok := ev.(*schemas.ValuesMasked); ok {
						masked = m
					}
				}
				if masked == nil {
					t.Fatal("nothing marked")
				}
				want := []string{data.path + tc.want}
				if !slices.Equal(masked.Paths, want) || !slices.Equal(masked.Shred, want) {
					t.Fatalf("marked %q, for shredding %q, want %q", masked.Paths, masked.Shred, want)
				}
				w = applyAll(t, w, dec.Events...)
				if view, _ := json.Marshal(w.Conductor(true)); strings.Contains(string(view), value) {
					t.Errorf("view %s", view)
				}
				w = applyAll(t, w, &schemas.WorkflowCompacted{Time: 3})
				if state, err := msgpack.Marshal(w); err != nil || bytes.Contains(state, []byte(value)) {
					t.Errorf("state after compaction holds the value (%v)", err)
				}
				// A key marked alone leaves the others as given.
				view, _ := json.Marshal(w.Conductor(true))
				if strings.Contains(string(view), value) || tc.want != "" && tc.m["other"] != nil && !strings.Contains(string(view), `"other":"x"`) {
					t.Errorf("view after compaction %s", view)
				}
			})
		}
	}
}

// The name of the secret an UPDATE_SECRET writes is its subject and its
// keys, listed to everyone who may list secrets, and redaction stops
// looking for it: a name a resolved value reached in the decision that
// schedules the task (a worker's echo of a secret, read before this pass
// redacts it) is refused, quoting nothing, and the value is still
// redacted after; a plain name goes through.
func TestUpdateSecretNamedWithAResolvedValueIsRefused(t *testing.T) {
	const secret = "resolved-secret-value"
	for _, tc := range []struct {
		name, secretKey string
		failed          bool // as it is scheduled: it is handed nothing
		refused         bool
		rebuilt         bool // the later echo is protected by a guard that reads the workflow's state afresh
	}{
		{"plain", "deploy_key", false, false, false},
		{"the value", secret, false, true, false},
		{"text holding it", "k_" + secret, false, true, false},
		{"the value, the task failed as it is scheduled", secret, true, false, false},
		{"the value, the task failed as it is scheduled, rebuilt", secret, true, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, keys := openKeys(t)
			g := New(Config{Keys: keys})
			started, err := engine.Apply(nil, &schemas.WorkflowStarted{WorkflowID: "wf-name", Name: "w", Version: 1,
				Def: []byte(`{"name":"w","version":1,"tasks":[]}`)})
			if err != nil {
				t.Fatal(err)
			}
			before := applyAll(t, started, &schemas.TaskScheduled{TaskID: "src", Ref: "src", Name: "src", Type: conductor.TaskTypeSimple, Status: conductor.TaskScheduled},
				&schemas.TaskScheduled{TaskID: "next", Ref: "next", Name: "next", Type: conductor.TaskTypeSimple, Status: conductor.TaskScheduled})
			g.memoFor("wf-name").add([]byte(secret)) // as a hand-off resolving it does
			status := conductor.TaskScheduled
			if tc.failed {
				status = conductor.TaskFailedWithTerminalError
			}
			first, err := g.Protect(ctx, before, engine.Decision{Events: []schemas.Event{
				&schemas.TaskUpdated{TaskID: "src", Status: conductor.TaskCompleted, Output: map[string]any{"echo": secret}, Time: 1},
				&schemas.TaskScheduled{TaskID: "r", Ref: "r", Name: "r", Type: conductor.TaskTypeUpdateSecret, Status: status,
					Input: map[string]any{"_secrets": map[string]any{"secretKey": tc.secretKey, "secretValue": "v"}}, Time: 1}}})
			switch {
			case tc.refused && !errors.Is(err, fault.ErrSecretInName):
				t.Fatalf("protect: %v, want it refused as a name made of a secret value", err)
			case !tc.refused && err != nil:
				t.Fatalf("protect: %v", err)
			case err != nil && strings.Contains(err.Error(), secret):
				t.Fatalf("the refusal quotes the value: %v", err)
			}
			if tc.rebuilt {
				// An engine that starts again knows the value from the
				// failed task's sealed input alone.
				before, g = applyAll(t, before, first.Events...), New(Config{Keys: keys})
			}
			dec, err := g.Protect(ctx, before, engine.Decision{Events: []schemas.Event{
				&schemas.TaskUpdated{TaskID: "next", Status: conductor.TaskCompleted, Output: map[string]any{"echo": secret}, Time: 2}}})
			if err != nil {
				t.Fatal(err)
			}
			if got := dec.Events[0].(*schemas.TaskUpdated).Output["echo"]; got != masking.Mask {
				t.Fatalf("a later echo of the value is stored as %v, want it redacted", got)
			}
		})
	}
}

// UPDATE_SECRETs of one secret scheduled by one decision (a fork's
// branches) all write it: the name the first seals in its _secrets block
// is the secret's name, not a value the second would be named with.
func TestUpdateSecretsOfOneSecretScheduledTogetherGoThrough(t *testing.T) {
	t.Parallel()
	for _, name := range []string{
		"deploy_key",      // the definition spells it
		"computed_name_x", // read from plain data
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx, keys := openKeys(t)
			g := New(Config{Keys: keys})
			before, err := engine.Apply(nil, &schemas.WorkflowStarted{WorkflowID: "wf-fork", Name: "w", Version: 1,
				Def: []byte(`{"name":"w","version":1,"tasks":[{"name":"deploy_key"}]}`)})
			if err != nil {
				t.Fatal(err)
			}
			var events []schemas.Event
			for _, id := range []string{"a", "b"} {
				events = append(events, &schemas.TaskScheduled{TaskID: id, Ref: id, Name: id, Type: conductor.TaskTypeUpdateSecret, Status: conductor.TaskScheduled,
					Input: map[string]any{"_secrets": map[string]any{"secretKey": name, "secretValue": "v-" + id}}, Time: 1})
			}
			if _, err := g.Protect(ctx, before, engine.Decision{Events: events}); err != nil {
				t.Fatalf("protect: %v, want both UPDATE_SECRETs scheduled", err)
			}
		})
	}
}
