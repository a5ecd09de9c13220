package engine_test

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/internal/testutil/fields"
	"github.com/flowvault/flowvault/schemas"
)

// Without the methods of engine.Workflow and engine.Task, these encode the
// reflective way.
type (
	reflectiveWorkflow engine.Workflow
	reflectiveTask     engine.Task
)

// The hand-written encoders write exactly the reflective encoding: for every
// state the replay fixtures pass through, and for states with every field
// set, so that a field added to the structs and not to the encoders fails
// here. A workflow's tasks are compared one by one, since the reflective
// workflow encoding uses the tasks' own encoder.
func TestStateEncodingMatchesReflection(t *testing.T) {
	var states []*engine.Workflow
	paths, _ := filepath.Glob(filepath.Join("testdata", "replay", "*.records"))
	if len(paths) == 0 {
		t.Fatal("no replay fixtures")
	}
	for _, path := range paths {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		fold(t, b, func(w *engine.Workflow) {
			w.Seq++
			states = append(states, w.Clone())
		})
	}
	// Every field set, and each field alone, so that two fields cannot
	// swap places unnoticed.
	full := &engine.Workflow{}
	fields.Fill(reflect.ValueOf(full).Elem(), -1)
	fullTask := &engine.Task{}
	fields.Fill(reflect.ValueOf(fullTask).Elem(), -1)
	full.Tasks = []*engine.Task{fullTask, {ID: "empty"}}
	states = append(states, full)
	states = append(states, fields.Variants[engine.Workflow]()...)
	for _, task := range fields.Variants[engine.Task]() {
		states = append(states, &engine.Workflow{Tasks: []*engine.Task{task}})
	}

	for i, w := range states {
		got, err := schemas.MarshalSorted(w)
		if err != nil {
			t.Fatal(err)
		}
		want, err := schemas.MarshalSorted((*reflectiveWorkflow)(w))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("state %d (%s): %s\nencodes to\n%x\nreflection gives\n%x", i, w.ID,
				fields.KeyDiff(reflect.TypeFor[engine.Workflow](), got, want), got, want)
		}
		for _, task := range w.Tasks {
			got, _ := schemas.MarshalSorted(task)
			want, _ := schemas.MarshalSorted((*reflectiveTask)(task))
			if !bytes.Equal(got, want) {
				t.Fatalf("state %d, task %s: %s\nencodes to\n%x\nreflection gives\n%x", i, task.Ref,
					fields.KeyDiff(reflect.TypeFor[engine.Task](), got, want), got, want)
			}
		}
		var back engine.Workflow
		if err := msgpack.Unmarshal(got, &back); err != nil {
			t.Fatal(err)
		}
		again, _ := schemas.MarshalSorted(&back)
		if !bytes.Equal(again, got) {
			t.Fatalf("state %d does not survive a round trip", i)
		}
	}
}

// A state, with every field set (its tasks' too, down through nested
// structs, maps and slices) and with each field alone, comes back whole
// from its encoding, and from the read model's: the head
// (engine.AppendStateHead) with the definition, input and tasks, which
// the read model stores apart.
func TestEveryStateFieldSurvivesItsEncoding(t *testing.T) {
	for i, w := range fields.Variants[engine.Workflow]() {
		if d := fields.RoundTrip(t, w); d != "" {
			t.Errorf("state #%d does not survive its encoding: %s", i, d)
		}
		head, err := engine.AppendStateHead(nil, w)
		if err != nil {
			t.Fatal(err)
		}
		back := new(engine.Workflow)
		if err := msgpack.Unmarshal(head, back); err != nil {
			t.Fatalf("state #%d: %v", i, err)
		}
		back.DefJSON, back.Input, back.Tasks = w.DefJSON, w.Input, w.Tasks
		if d := fields.Diff(w, back); d != "" {
			t.Errorf("state #%d does not survive the read model's encoding: %s", i, d)
		}
	}
	for i, task := range fields.Variants[engine.Task]() {
		if d := fields.RoundTrip(t, task); d != "" {
			t.Errorf("task #%d does not survive its encoding: %s", i, d)
		}
	}
}
