package metadata_test

import (
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/metadata"
	"github.com/flowvault/flowvault/projections"
)

// taskUses renders TaskUses(name) as "workflow@version[TYPES]by" strings.
func taskUses(tb testing.TB, md *metadata.Store, name string) []string {
	tb.Helper()
	uses, err := md.TaskUses(ctx(tb), name)
	if err != nil {
		tb.Fatalf("TaskUses(%s): %v", name, err)
	}
	out := make([]string, 0, len(uses))
	for _, u := range uses {
		out = append(out, u.Workflow+"@"+strconv.Itoa(u.Version)+"["+strings.Join(u.Types, ",")+"]"+u.CreatedBy)
	}
	return out
}

// The index finds a task name wherever the engine would schedule a task of
// that name from the definition: at the top, nested in SWITCH, FORK_JOIN
// and DO_WHILE, in an inline sub-workflow definition, and as the task a
// DYNAMIC or FORK_JOIN_DYNAMIC task names with a constant. A name the
// engine computes at run time is not a definition's.
func TestTaskUsesFindsEveryWorkerTask(t *testing.T) {
	t.Parallel()
	n := newNode(t, nil, metadata.Options{})
	c := ctx(t)
	defs := []string{
		`{"name":"top","tasks":[{"name":"plain","taskReferenceName":"p"},{"name":"http_named","taskReferenceName":"h","type":"HTTP"}]}`,
		`{"name":"nested","tasks":[
			{"name":"sw","taskReferenceName":"sw","type":"SWITCH","evaluatorType":"value-param","expression":"x",
			 "decisionCases":{"a":[{"name":"in_case","taskReferenceName":"c1"}]},"defaultCase":[{"name":"in_default","taskReferenceName":"d1"}]},
			{"name":"fork","taskReferenceName":"f","type":"FORK_JOIN","forkTasks":[[{"name":"in_fork","taskReferenceName":"f1"}]]},
			{"name":"join","taskReferenceName":"j","type":"JOIN","joinOn":["f1"]},
			{"name":"loop","taskReferenceName":"l","type":"DO_WHILE","loopCondition":"false","loopOver":[{"name":"in_loop","taskReferenceName":"l1"}]}]}`,
		`{"name":"inline_sub","tasks":[{"name":"sub","taskReferenceName":"s","type":"SUB_WORKFLOW","subWorkflowParam":{"workflowDefinition":
			{"name":"child","tasks":[{"name":"sub2","taskReferenceName":"s2","type":"SUB_WORKFLOW","subWorkflowParam":{"workflowDefinition":
				{"name":"grandchild","tasks":[{"name":"in_inline","taskReferenceName":"g1"}]}}}]}}}]}`,
		`{"name":"dynamic","tasks":[
			{"name":"dyn","taskReferenceName":"dy","type":"DYNAMIC","dynamicTaskNameParam":"tn","inputParameters":{"tn":"dyn_const"}},
			{"name":"dyn2","taskReferenceName":"dy2","type":"DYNAMIC","dynamicTaskNameParam":"tn","inputParameters":{"tn":"${workflow.input.t}"}},
			{"name":"fjd","taskReferenceName":"fjd","type":"FORK_JOIN_DYNAMIC","inputParameters":{"forkTaskName":"fork_const","forkTaskInputs":[1,2]}},
			{"name":"join1","taskReferenceName":"j1","type":"JOIN"},
			{"name":"fjd2","taskReferenceName":"fork_by_ref","type":"FORK_JOIN_DYNAMIC","inputParameters":{"forkTaskInputs":"${workflow.input.list}"}},
			{"name":"join2","taskReferenceName":"j2","type":"JOIN"},
			{"name":"fjd3","taskReferenceName":"fjd3","type":"FORK_JOIN_DYNAMIC","dynamicForkTasksParam":"tasks","dynamicForkTasksInputParamName":"ins",
			 "inputParameters":{"tasks":[{"name":"listed_const","taskReferenceName":"lc"}],"ins":{}}},
			{"name":"join3","taskReferenceName":"j3","type":"JOIN"},
			{"name":"fjd4","taskReferenceName":"fjd4","type":"FORK_JOIN_DYNAMIC","inputParameters":{"forkTaskName":"${workflow.input.n}","forkTaskInputs":[1]}},
			{"name":"join4","taskReferenceName":"j4","type":"JOIN"}]}`,
		// Conductor's own examples name a dynamicForkTasksParam their
		// input does not hold: the engine forks forkTaskName's tasks.
		`{"name":"oss_example","tasks":[
			{"name":"fjd","taskReferenceName":"fjd","type":"FORK_JOIN_DYNAMIC","dynamicForkTasksParam":"dynamicTasks",
			 "inputParameters":{"forkTaskName":"example_const","forkTaskInputs":[1,2]}},
			{"name":"join","taskReferenceName":"j","type":"JOIN"}]}`,
	}
	for _, d := range defs {
		if err := n.md.RegisterWorkflowDef(c, wf(t, d), false, "alice"); err != nil {
			t.Fatalf("register %s: %v", d, err)
		}
	}
	for _, tc := range []struct {
		task string
		want []string
	}{
		{"plain", []string{"top@1[SIMPLE]alice"}},
		{"http_named", []string{"top@1[HTTP]alice"}},
		{"in_case", []string{"nested@1[SIMPLE]alice"}},
		{"in_default", []string{"nested@1[SIMPLE]alice"}},
		{"in_fork", []string{"nested@1[SIMPLE]alice"}},
		{"in_loop", []string{"nested@1[SIMPLE]alice"}},
		{"sw", []string{"nested@1[SWITCH]alice"}},
		{"in_inline", []string{"inline_sub@1[SIMPLE]alice"}},
		{"dyn_const", []string{"dynamic@1[SIMPLE]alice"}},
		{"fork_const", []string{"dynamic@1[SIMPLE]alice"}},
		{"fork_by_ref", []string{"dynamic@1[SIMPLE]alice"}},
		{"listed_const", []string{"dynamic@1[SIMPLE]alice"}},
		{"example_const", []string{"oss_example@1[SIMPLE]alice"}},
		{"${workflow.input.t}", []string{}},
		{"unused", []string{}},
		{"", []string{}},
	} {
		t.Run(tc.task, func(t *testing.T) {
			if got := taskUses(t, n.md, tc.task); !slices.Equal(got, tc.want) {
				t.Fatalf("TaskUses(%q) = %v, want %v", tc.task, got, tc.want)
			}
		})
	}
}

// Each version is indexed with its creator, which an overwrite keeps; an
// overwrite replaces the version's tasks, a removal drops them.
func TestTaskUsesFollowVersions(t *testing.T) {
	t.Parallel()
	n := newNode(t, nil, metadata.Options{})
	c := ctx(t)
	def := func(name string, version int, task string) string {
		return `{"name":"` + name + `","version":` + strconv.Itoa(version) + `,"tasks":[{"name":"` + task + `","taskReferenceName":"r"}]}`
	}
	type step struct {
		do   func() error
		task string
		want []string
	}
	for i, s := range []step{
		{func() error { return n.md.RegisterWorkflowDef(c, wf(t, def("w", 1, "x")), false, "alice") }, "x", []string{"w@1[SIMPLE]alice"}},
		{func() error { return n.md.RegisterWorkflowDef(c, wf(t, def("w", 2, "x")), false, "bob") }, "x", []string{"w@1[SIMPLE]alice", "w@2[SIMPLE]bob"}},
		{func() error { return n.md.RegisterWorkflowDef(c, wf(t, def("v", 1, "x")), false, "carol") }, "x", []string{"v@1[SIMPLE]carol", "w@1[SIMPLE]alice", "w@2[SIMPLE]bob"}},
		// Overwritten by bob: alice still created it; its task is now y.
		{func() error { return n.md.RegisterWorkflowDef(c, wf(t, def("w", 1, "y")), true, "bob") }, "x", []string{"v@1[SIMPLE]carol", "w@2[SIMPLE]bob"}},
		{func() error { return nil }, "y", []string{"w@1[SIMPLE]alice"}},
		{func() error { return n.md.DeleteWorkflowDef(c, "w", 2, "bob") }, "x", []string{"v@1[SIMPLE]carol"}},
		{func() error { return n.md.DeleteWorkflowDef(c, "v", 1, "carol") }, "x", []string{}},
	} {
		if err := s.do(); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if got := taskUses(t, n.md, s.task); !slices.Equal(got, s.want) {
			t.Fatalf("step %d: TaskUses(%s) = %v, want %v", i, s.task, got, s.want)
		}
	}
	// What was built change by change is what a rebuild from the log builds.
	n.caughtUp(t)
	rebuilt := testutil.OpenStore(t)
	r := runProjection(t, n.log, rebuilt)
	waitAll(t, n.log, r)
	if before, after := dump(t, n.store), dump(t, rebuilt); before != after {
		t.Fatalf("rebuilt read model differs\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

// A FORK_JOIN_DYNAMIC starts workflows by name as a SUB_WORKFLOW does:
// the forkTaskWorkflow its input fixes, each with an element of
// forkTaskInputs, or a SUB_WORKFLOW or START_WORKFLOW of the constant list
// of tasks it forks. A name given by an expression is not found.
func TestStartersFindWhatADynamicForkStarts(t *testing.T) {
	t.Parallel()
	n := newNode(t, nil, metadata.Options{})
	const forking = `{"name":"v","tasks":[
		{"name":"f1","taskReferenceName":"f1","type":"FORK_JOIN_DYNAMIC","inputParameters":{"forkTaskWorkflow":"by_oss_form","forkTaskInputs":[{"a":1}]}},
		{"name":"j1","taskReferenceName":"j1","type":"JOIN"},
		{"name":"f2","taskReferenceName":"f2","type":"FORK_JOIN_DYNAMIC","dynamicForkTasksParam":"tasks","dynamicForkTasksInputParamName":"ins",
		 "inputParameters":{"ins":{},"tasks":[
			{"name":"s","taskReferenceName":"s","type":"SUB_WORKFLOW","subWorkflowParam":{"name":"by_listed_sub"}},
			{"name":"i","taskReferenceName":"i","type":"SUB_WORKFLOW","subWorkflowParam":{"workflowDefinition":
				{"name":"inline","failureWorkflow":"by_listed_inline","tasks":[{"name":"x","taskReferenceName":"x"}]}}},
			{"name":"st","taskReferenceName":"st","type":"START_WORKFLOW","inputParameters":{"startWorkflow":{"name":"by_listed_start"}}}]}},
		{"name":"j2","taskReferenceName":"j2","type":"JOIN"},
		{"name":"f3","taskReferenceName":"f3","type":"FORK_JOIN_DYNAMIC","inputParameters":{"forkTaskWorkflow":"${workflow.input.w}","forkTaskInputs":[1]}},
		{"name":"j3","taskReferenceName":"j3","type":"JOIN"}]}`
	if err := n.md.RegisterWorkflowDef(ctx(t), wf(t, forking), false, "bob"); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"by_oss_form", "by_listed_sub", "by_listed_inline", "by_listed_start"} {
		if got, want := starters(t, n.md, name), []string{"v@1:bob/bob"}; !slices.Equal(got, want) {
			t.Errorf("Starters(%s) = %v, want %v", name, got, want)
		}
	}
	for _, name := range []string{"${workflow.input.w}", "inline"} {
		if got := starters(t, n.md, name); len(got) != 0 {
			t.Errorf("Starters(%s) = %v, want none", name, got)
		}
	}
}

// A DYNAMIC task runs as the type its input names, a SUB_WORKFLOW or a
// START_WORKFLOW among them, with its own subWorkflowParam and input: the
// workflows those name are started by name, whatever the name turns out
// to be at run time.
func TestStartersFindWhatADynamicTaskStarts(t *testing.T) {
	t.Parallel()
	n := newNode(t, nil, metadata.Options{})
	const dynamic = `{"name":"v","tasks":[
		{"name":"d1","taskReferenceName":"d1","type":"DYNAMIC","dynamicTaskNameParam":"tn","inputParameters":{"tn":"SUB_WORKFLOW"},
		 "subWorkflowParam":{"name":"by_dynamic_sub"}},
		{"name":"d2","taskReferenceName":"d2","type":"DYNAMIC","dynamicTaskNameParam":"tn",
		 "inputParameters":{"tn":"${workflow.input.t}","startWorkflow":{"name":"by_dynamic_start"}}},
		{"name":"d3","taskReferenceName":"d3","type":"DYNAMIC","dynamicTaskNameParam":"tn","inputParameters":{"tn":"SUB_WORKFLOW"},
		 "subWorkflowParam":{"name":"${workflow.input.w}"}}]}`
	if err := n.md.RegisterWorkflowDef(ctx(t), wf(t, dynamic), false, "bob"); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"by_dynamic_sub", "by_dynamic_start"} {
		if got, want := starters(t, n.md, name), []string{"v@1:bob/bob"}; !slices.Equal(got, want) {
			t.Errorf("Starters(%s) = %v, want %v", name, got, want)
		}
	}
	if got := starters(t, n.md, "${workflow.input.w}"); len(got) != 0 {
		t.Errorf("Starters of an expression = %v, want none", got)
	}
}

func waitAll(tb testing.TB, l *eventlog.Log, r *projections.Runner) {
	tb.Helper()
	c := testutil.Context(tb, 30*time.Second)
	last, err := l.StreamLastSeq(c, eventlog.Metadata.Name)
	if err != nil {
		tb.Fatal(err)
	}
	if err := r.WaitFor(c, last); err != nil {
		tb.Fatal(err)
	}
}

// starters renders Starters(name) as "workflow@version:createdBy/updatedBy"
// strings.
func starters(tb testing.TB, md *metadata.Store, name string) []string {
	tb.Helper()
	sts, err := md.Starters(ctx(tb), name)
	if err != nil {
		tb.Fatalf("Starters(%s): %v", name, err)
	}
	out := make([]string, 0, len(sts))
	for _, st := range sts {
		out = append(out, st.Workflow+"@"+strconv.Itoa(st.Version)+":"+st.CreatedBy+"/"+st.UpdatedBy)
	}
	return out
}

// The start index finds each name a version starts by: its
// failureWorkflow, a SUB_WORKFLOW's name (nested, and an inline
// definition's failureWorkflow), a START_WORKFLOW's; with who created and
// last wrote the version, which an overwrite by another changes; a
// removal drops the version. A name given by an expression is not found.
func TestStartersFollowVersions(t *testing.T) {
	t.Parallel()
	n := newNode(t, nil, metadata.Options{})
	c := ctx(t)
	const (
		failing = `{"name":"w","version":1,"failureWorkflow":"cleanup","tasks":[{"name":"x","taskReferenceName":"r"}]}`
		forking = `{"name":"v","tasks":[{"name":"f","taskReferenceName":"f","type":"FORK_JOIN","forkTasks":[[
			{"name":"s","taskReferenceName":"s","type":"SUB_WORKFLOW","subWorkflowParam":{"name":"cleanup"}},
			{"name":"i","taskReferenceName":"i","type":"SUB_WORKFLOW","subWorkflowParam":{"workflowDefinition":
				{"name":"inline","failureWorkflow":"audit","tasks":[{"name":"x","taskReferenceName":"x"}]}}},
			{"name":"d","taskReferenceName":"d","type":"SUB_WORKFLOW","subWorkflowParam":{"name":"${workflow.input.n}"}}]]},
			{"name":"j","taskReferenceName":"j","type":"JOIN","joinOn":["s"]},
			{"name":"st","taskReferenceName":"st","type":"START_WORKFLOW","inputParameters":{"startWorkflow":{"name":"audit"}}}]}`
		plain = `{"name":"w","version":1,"tasks":[{"name":"x","taskReferenceName":"r"}]}`
	)
	type step struct {
		do   func() error
		name string
		want []string
	}
	for i, s := range []step{
		{func() error { return n.md.RegisterWorkflowDef(c, wf(t, failing), false, "alice") }, "cleanup", []string{"w@1:alice/alice"}},
		{func() error { return n.md.RegisterWorkflowDef(c, wf(t, forking), false, "bob") }, "cleanup", []string{"v@1:bob/bob", "w@1:alice/alice"}},
		{func() error { return nil }, "audit", []string{"v@1:bob/bob"}},
		{func() error { return nil }, "${workflow.input.n}", []string{}},
		{func() error { return nil }, "inline", []string{}},
		// Overwritten by carol, still naming it: alice created it, carol wrote it.
		{func() error { return n.md.RegisterWorkflowDef(c, wf(t, failing), true, "carol") }, "cleanup", []string{"v@1:bob/bob", "w@1:alice/carol"}},
		// Overwritten without it.
		{func() error { return n.md.RegisterWorkflowDef(c, wf(t, plain), true, "carol") }, "cleanup", []string{"v@1:bob/bob"}},
		{func() error { return n.md.DeleteWorkflowDef(c, "v", 1, "bob") }, "audit", []string{}},
		{func() error { return nil }, "cleanup", []string{}},
	} {
		if err := s.do(); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if got := starters(t, n.md, s.name); !slices.Equal(got, s.want) {
			t.Fatalf("step %d: Starters(%s) = %v, want %v", i, s.name, got, s.want)
		}
	}
	n.caughtUp(t)
	rebuilt := testutil.OpenStore(t)
	waitAll(t, n.log, runProjection(t, n.log, rebuilt))
	if before, after := dump(t, n.store), dump(t, rebuilt); before != after {
		t.Fatalf("rebuilt read model differs\nbefore:\n%s\nafter:\n%s", before, after)
	}
}
