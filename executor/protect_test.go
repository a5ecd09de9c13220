package executor

import (
	"context"
	"slices"
	"testing"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/schemas"
)

// protectorFunc protects a decision with a function.
type protectorFunc func(before *engine.Workflow, dec engine.Decision) engine.Decision

func (f protectorFunc) Protect(_ context.Context, before *engine.Workflow, dec engine.Decision) (engine.Decision, error) {
	return f(before, dec), nil
}

// The state a protected decision leaves in the cache is what its recorded
// events fold to: the decision's own when the protector changed none of
// them, the fold of the changed ones otherwise, and the protector's when
// it hands back one it folded them to (the guard's, after sealing), which
// is not folded again.
func TestProtectKeepsTheStateOfTheRecordedEvents(t *testing.T) {
	before, err := engine.Apply(nil, &schemas.WorkflowStarted{WorkflowID: "wf-p", Name: "w", Version: 1,
		Def: []byte(`{"name":"w","version":1,"tasks":[]}`)})
	if err != nil {
		t.Fatal(err)
	}
	decide := func() engine.Decision {
		ev := &schemas.VariablesUpdated{Variables: map[string]any{"v": "decided"}, Time: 1}
		state, err := engine.Apply(before.Clone(), ev)
		if err != nil {
			t.Fatal(err)
		}
		return engine.Decision{Events: []schemas.Event{ev}, State: state}
	}
	rewrite := func(dec engine.Decision) []schemas.Event {
		events := slices.Clone(dec.Events)
		events[0] = &schemas.VariablesUpdated{Variables: map[string]any{"v": "protected"}, Time: 1}
		return events
	}
	var handed *engine.Workflow
	for _, tc := range []struct {
		name    string
		protect protectorFunc
		want    string
		same    func(decided, got *engine.Workflow) bool
	}{
		{"unchanged", func(_ *engine.Workflow, dec engine.Decision) engine.Decision { return dec },
			"decided", func(decided, got *engine.Workflow) bool { return got == decided }},
		{"changed", func(_ *engine.Workflow, dec engine.Decision) engine.Decision {
			dec.Events = rewrite(dec)
			return dec
		}, "protected", func(decided, got *engine.Workflow) bool { return got != decided }},
		{"changed and folded", func(before *engine.Workflow, dec engine.Decision) engine.Decision {
			dec.Events = rewrite(dec)
			handed, err = engine.Apply(before.Clone(), dec.Events[0])
			if err != nil {
				t.Fatal(err)
			}
			dec.State = handed
			return dec
		}, "protected", func(_, got *engine.Workflow) bool { return got == handed }},
	} {
		e := &Executor{protector: tc.protect}
		dec := decide()
		decided := dec.State
		got, err := e.protect(context.Background(), before, dec)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if v := got.State.Variables["v"]; v != tc.want || !tc.same(decided, got.State) {
			t.Errorf("%s: state holds %v (the decision's %v, handed back %v)", tc.name, v, got.State == decided, got.State == handed)
		}
		if before.Variables["v"] != nil {
			t.Fatalf("%s: the state before was changed: %v", tc.name, before.Variables)
		}
	}
}
