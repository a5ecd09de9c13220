package engine

import (
	"fmt"
	"testing"
	"time"

	"github.com/flowvault/flowvault/schemas/conductor"
)

// The index finds what a scan of the task list finds while the list
// grows, has tasks replaced, and is cut by a reset and grown again past
// the length the index covered.
func TestRefIndexFollowsTheTaskList(t *testing.T) {
	seq := 0
	tasks := func(prefix string, from, to int) []*Task {
		var ts []*Task
		for i := from; i < to; i++ {
			seq++
			ts = append(ts, &Task{ID: fmt.Sprintf("%s-id-%d", prefix, i), Ref: fmt.Sprintf("%s%d", prefix, i%30), Seq: seq})
		}
		return ts
	}
	d := &decision{w: &Workflow{Tasks: tasks("a", 0, 40)}}
	check := func(step string, refs ...string) {
		t.Helper()
		for _, ref := range refs {
			if got, want := d.latest(ref), d.w.LatestByRef(ref); got != want {
				t.Fatalf("%s: latest(%q) = %v, a scan finds %v", step, ref, got, want)
			}
		}
		want := 0
		for _, t := range d.w.Tasks {
			want = max(want, t.Seq)
		}
		if got := d.nextSeq(); got != want+1 {
			t.Fatalf("%s: next seq %d, a scan finds %d", step, got, want+1)
		}
	}
	check("built", "a0", "a5", "a29", "b0")

	d.w.Tasks = append(d.w.Tasks, tasks("b", 0, 5)...)
	check("grown", "a5", "b0", "b4")

	replaced := *d.w.Tasks[len(d.w.Tasks)-1]
	d.w.Tasks[len(d.w.Tasks)-1] = &replaced
	check("last task replaced", "b4", "a9")

	// A rerun keeps a prefix, and the decision schedules past the length
	// the index covered.
	d.w.Tasks = append(d.w.Tasks[:10:10], tasks("c", 0, 40)...)
	check("cut and grown", "a5", "a15", "a29", "b0", "c0", "c35")

	// keepLastN removes a loop's old iterations from the middle of the
	// list, and the decision schedules on.
	d.w.Tasks = append(append(d.w.Tasks[:3:3], d.w.Tasks[20:]...), tasks("e", 0, 2)...)
	check("cut in the middle and grown", "a5", "a15", "c0", "c5", "c35", "e0")

	// A restart starts over.
	d.w.Tasks = tasks("d", 0, 60)
	check("restarted", "a5", "c0", "d0", "d29")
	d.w.Tasks = nil
	check("emptied", "d0")
}

// States that went apart from one never share its index: the decision
// that lost its append and the state caught up with the log instead may
// hold, at the same place, tasks of the same derived id under different
// reference names.
func TestRefIndexStaysWithOneState(t *testing.T) {
	defer func(n int) { scanBelow = n }(scanBelow)
	scanBelow = 0
	base := &Workflow{ID: "wf"}
	for i := range 3 {
		base.Tasks = append(base.Tasks, &Task{ID: fmt.Sprintf("t-%d", i), Ref: fmt.Sprintf("r%d", i), Seq: i + 1})
	}
	if got := (&decision{w: base}).latest("r1"); got == nil || got.ID != "t-1" {
		t.Fatalf("base: latest(r1) = %v", got)
	}

	lost := base.Clone() // the decision whose append lost
	lost.Tasks = append(lost.Tasks, &Task{ID: "t-3", Ref: "mine", Seq: 4})
	if got := (&decision{w: lost}).latest("mine"); got == nil || got.ID != "t-3" {
		t.Fatalf("lost: latest(mine) = %v", got)
	}

	caught := base.Clone() // the cached state, caught up with another engine's record
	caught.Tasks = append(caught.Tasks, &Task{ID: "t-3", Ref: "theirs", Seq: 4})
	d := &decision{w: caught}
	if got := d.latest("theirs"); got == nil || got.Ref != "theirs" {
		t.Fatalf("caught up: latest(theirs) = %v, want the task it holds", got)
	}
	if got := d.latest("mine"); got != nil {
		t.Fatalf("caught up: latest(mine) = %+v, a task only the lost decision had", got)
	}
	if got := d.nextSeq(); got != 5 {
		t.Fatalf("caught up: next seq %d, want 5", got)
	}

	// The state a decision leaves keeps the index for the next one.
	next := caught.Clone()
	if next.refs == nil || next.refs != caught.refs || next.refs.owner != next {
		t.Fatal("the copy did not take the index over")
	}
	if caught.Clone().refs != nil {
		t.Fatal("a state that handed its index on handed it on again")
	}
}

// A decision that changes nothing leaves the index with the state it was
// asked about: the next decision on that state need not rebuild it.
func TestRefIndexStaysAfterANoOpDecision(t *testing.T) {
	defer func(n int) { scanBelow = n }(scanBelow)
	scanBelow = 0
	var def conductor.WorkflowDef
	js := `{"name":"w","version":1,"tasks":[{"name":"a","taskReferenceName":"a"},{"name":"b","taskReferenceName":"b"}]}`
	if err := conductor.Unmarshal([]byte(js), &def); err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_800_000_000, 0)
	started, err := Decide(Input{Trigger: Start{WorkflowID: "wf", Def: &def}, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	w := started.State
	w.indexed()
	index := w.refs
	if index == nil || index.owner != w {
		t.Fatal("the state does not own the index it built")
	}
	d, err := Decide(Input{State: w, Trigger: Tick{}, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Events) != 0 || d.State != w {
		t.Fatalf("a tick with nothing due decided %d events", len(d.Events))
	}
	if w.refs != index || index.owner != w {
		t.Fatal("the no-op decision kept the index from the state")
	}
	if next, err := Decide(Input{State: w, Trigger: Result{Result: conductor.TaskResult{TaskID: w.Tasks[0].ID, Status: conductor.TaskCompleted}}, Now: now}); err != nil || len(next.Events) == 0 {
		t.Fatalf("result after the tick: %v", err)
	} else if next.State.refs != index || index.owner != next.State {
		t.Fatal("the next decision did not take the index over")
	}
}
