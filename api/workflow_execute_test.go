package api

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// treeModel is an executions read model of a few workflows, and the
// watches of its changes: a change wakes the watches of the workflow it
// changed, as the projection's do.
type treeModel struct {
	mu        sync.Mutex
	workflows map[string]*engine.Workflow
	watches   []treeWatch
	watched   chan []string // each Watch's ids
}

type treeWatch struct {
	ids []string
	c   chan struct{}
}

func (m *treeModel) Workflow(_ context.Context, id string) (*engine.Workflow, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if w, ok := m.workflows[id]; ok {
		return w, nil
	}
	return nil, fault.NotFound("workflow %s not found", id)
}

func (m *treeModel) Watch(ids ...string) (<-chan struct{}, func()) {
	c := make(chan struct{}, 1)
	m.mu.Lock()
	m.watches = append(m.watches, treeWatch{ids: ids, c: c})
	m.mu.Unlock()
	m.watched <- slices.Clone(ids)
	return c, func() {}
}

// commit stores w and wakes the watches of its id only.
func (m *treeModel) commit(w *engine.Workflow) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.workflows[w.ID] = w
	for _, wt := range m.watches {
		if slices.Contains(wt.ids, w.ID) {
			select {
			case wt.c <- struct{}{}:
			default:
			}
		}
	}
}

// A synchronous execution whose workflow waits for a child that has not
// started yet watches the child too: the child's start changes nothing of
// its parent, whose SUB_WORKFLOW task named the child when it was
// scheduled, so a wait that watched the parent alone slept until its next
// recheck (a second) before it saw the child's WAIT, on every execution
// into a sub-workflow.
func TestExecuteWatchesTheChildItWaitsFor(t *testing.T) {
	t.Parallel()
	parent := &engine.Workflow{ID: "parent", Status: conductor.WorkflowRunning, Tasks: []*engine.Task{
		{ID: "sub", Ref: "sub", Type: conductor.TaskTypeSubWorkflow, Status: conductor.TaskInProgress, SubWorkflowID: "child"},
	}}
	m := &treeModel{workflows: map[string]*engine.Workflow{parent.ID: parent}, watched: make(chan []string, 16)}
	s := &Server{deps: Deps{Executions: m, Changes: m}, stopping: make(chan struct{})}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type answer struct {
		block *engine.Workflow
		task  *engine.Task
		err   error
	}
	answers := make(chan answer, 1)
	go func() {
		_, block, task, err := s.awaitBlocking(ctx, parent.ID, nil, maxWaitSeconds*time.Second)
		answers <- answer{block, task, err}
	}()

	if ids := <-m.watched; !slices.Contains(ids, "child") {
		t.Fatalf("the wait watches %v: not the child its SUB_WORKFLOW task waits for", ids)
	}
	m.commit(&engine.Workflow{ID: "child", Status: conductor.WorkflowRunning, Tasks: []*engine.Task{
		{ID: "gate", Ref: "gate", Type: conductor.TaskTypeWait, Status: conductor.TaskInProgress},
	}})
	a := <-answers
	if a.err != nil || a.block == nil || a.block.ID != "child" || a.task == nil || a.task.Ref != "gate" {
		t.Fatalf("answered block %v, task %v, err %v; want the child's WAIT", a.block, a.task, a.err)
	}
}

// A pause holds a synchronous wait's target where it is: the wait stops
// at once with what it read, where it waited out waitForSeconds (up to
// ten minutes) for a state no wait could see change. A child the target
// waits for held so holds it too; anything that can still move (a
// running task, a child not read, a task named in waitUntilTaskRef that
// has not ended) keeps the wait going.
func TestBlockedStopsWhereAPauseHolds(t *testing.T) {
	t.Parallel()
	task := func(ref, typ, status string) *engine.Task {
		return &engine.Task{ID: ref, Ref: ref, Type: typ, Status: status}
	}
	sub := func(ref, child, status string) *engine.Task {
		st := task(ref, conductor.TaskTypeSubWorkflow, status)
		st.SubWorkflowID = child
		return st
	}
	wf := func(id, status string, tasks ...*engine.Task) *engine.Workflow {
		return &engine.Workflow{ID: id, Status: status, Tasks: tasks}
	}
	const (
		running = conductor.WorkflowRunning
		paused  = conductor.WorkflowPaused
	)
	signalled := task("gate", conductor.TaskTypeWait, conductor.TaskCompleted)
	tests := []struct {
		name string
		tree []*engine.Workflow
		refs []string
		want bool
	}{
		{"paused, its WAIT signalled", []*engine.Workflow{wf("t", paused, signalled)}, nil, true},
		{"paused, a worker task scheduled", []*engine.Workflow{wf("t", paused, signalled, task("w", "work", conductor.TaskScheduled))}, nil, true},
		{"paused, the task waited for still running", []*engine.Workflow{wf("t", paused, task("w", "work", conductor.TaskInProgress))}, []string{"w"}, false},
		{"paused, another task waited for", []*engine.Workflow{wf("t", paused, task("w", "work", conductor.TaskInProgress))}, []string{"other"}, true},
		{"running into a paused child", []*engine.Workflow{wf("t", running, sub("s", "c", conductor.TaskInProgress)), wf("c", paused, signalled)}, nil, true},
		{"a fork's paused children and its JOIN", []*engine.Workflow{
			wf("t", running, task("fork", conductor.TaskTypeForkJoin, conductor.TaskCompleted), sub("s1", "c1", conductor.TaskInProgress),
				sub("s2", "c2", conductor.TaskInProgress), task("join", conductor.TaskTypeJoin, conductor.TaskInProgress)),
			wf("c1", paused, signalled), wf("c2", paused)}, nil, true},
		{"a paused child and a task of the target running", []*engine.Workflow{
			wf("t", running, sub("s", "c", conductor.TaskInProgress), task("w", "work", conductor.TaskInProgress)), wf("c", paused)}, nil, false},
		{"a paused child and a running one", []*engine.Workflow{
			wf("t", running, sub("s1", "c1", conductor.TaskInProgress), sub("s2", "c2", conductor.TaskInProgress)),
			wf("c1", paused), wf("c2", running, task("w", "work", conductor.TaskInProgress))}, nil, false},
		{"paused, its child running", []*engine.Workflow{
			wf("t", paused, sub("s", "c", conductor.TaskInProgress)), wf("c", running, task("w", "work", conductor.TaskInProgress))}, nil, false},
		{"a child not read yet", []*engine.Workflow{wf("t", running, sub("s", "c", conductor.TaskInProgress))}, nil, false},
		{"running a worker task", []*engine.Workflow{wf("t", running, task("w", "work", conductor.TaskInProgress))}, nil, false},
		{"running, no task open", []*engine.Workflow{wf("t", running, signalled)}, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			block, task, done := blocked(tt.tree, tt.refs)
			if done != tt.want || block != nil || task != nil {
				t.Fatalf("blocked = %v, %v, %v; want %v and no task", block, task, done, tt.want)
			}
		})
	}
}

// The task strategies answer Conductor's TaskRun, as its SDKs decode it:
// the blocking task's output (BLOCKING_TASK_INPUT's too, which answered
// {}), its workerId as createdBy and its startTime as createTime (they
// were the target workflow's), its own workflow's priority and name, a
// retryCount even when 0 (the Java SDK's getBlockingTask unboxes it), and
// the retriedTaskId and reasonForIncompletion OSS's TaskRun carries (they
// were left out). BLOCKING_TASK_LIST (refused with a 400) answers the task
// in tasks instead of the flattened fields. BLOCKING_WORKFLOW names the
// task of its tasks that blocks (blockingTaskId, which the Java SDK's
// hasBlockingTask reads), every strategy the target's variables
// (targetWorkflowVariables); neither was answered.
func TestBlockingTaskAnswersConductorsTaskRun(t *testing.T) {
	t.Parallel()
	target := &engine.Workflow{ID: "parent", Name: "parent_flow", Status: conductor.WorkflowRunning, Priority: 2, CreatedBy: "alice", CreateTime: 1000, UpdateTime: 1100,
		Variables: map[string]any{"stage": "p"}}
	block := &engine.Workflow{ID: "child", Name: "child_flow", Status: conductor.WorkflowRunning, Priority: 7, CreatedBy: "alice", CreateTime: 2000, UpdateTime: 2100}
	gate := &engine.Task{ID: "gate-id", Ref: "gate", Name: "gate", Type: conductor.TaskTypeHuman, Status: conductor.TaskInProgress,
		Input: map[string]any{"ask": "ok?"}, Output: map[string]any{"seen": true}, WorkerID: "ops-7", ScheduledTime: 2990, StartTime: 3000, UpdateTime: 3100,
		RetryCount: 1, RetriedTaskID: "gate-0", Reason: "no answer in time"}
	block.Tasks = []*engine.Task{gate}
	target.Tasks = []*engine.Task{{ID: "sub-id", Ref: "sub", Name: "sub", Type: conductor.TaskTypeSubWorkflow, Status: conductor.TaskInProgress, SubWorkflowID: "child"}}

	tests := []struct {
		strategy string
		want     map[string]any
		absent   []string
	}{
		{conductor.ReturnBlockingTask, map[string]any{"workflowId": "child", "status": "IN_PROGRESS", "taskId": "gate-id", "taskType": "HUMAN",
			"referenceTaskName": "gate", "retryCount": 1.0, "workflowType": "child_flow", "priority": 7.0, "createdBy": "ops-7",
			"createTime": 3000.0, "updateTime": 3100.0, "input": map[string]any{"ask": "ok?"}, "output": map[string]any{"seen": true},
			"targetWorkflowId": "parent", "retriedTaskId": "gate-0", "reasonForIncompletion": "no answer in time",
			"targetWorkflowVariables": map[string]any{"stage": "p"}}, []string{"tasks", "variables", "blockingTaskId"}},
		{conductor.ReturnBlockingTaskInput, map[string]any{"workflowId": "child", "taskId": "gate-id", "retryCount": 1.0, "workflowType": "child_flow",
			"priority": 7.0, "createdBy": "ops-7", "createTime": 3000.0, "input": map[string]any{"ask": "ok?"}, "output": map[string]any{"seen": true},
			"retriedTaskId": "gate-0", "reasonForIncompletion": "no answer in time"}, nil},
		{conductor.ReturnBlockingTaskList, map[string]any{"responseType": "BLOCKING_TASK_LIST", "workflowId": "child", "status": "IN_PROGRESS",
			"priority": 7.0, "input": map[string]any{"ask": "ok?"}, "output": map[string]any{"seen": true}, "targetWorkflowId": "parent",
			"targetWorkflowVariables": map[string]any{"stage": "p"}},
			[]string{"taskId", "taskType", "referenceTaskName", "retryCount", "workflowType", "createdBy", "createTime", "variables", "blockingTaskId"}},
		{conductor.ReturnBlockingWorkflow, map[string]any{"workflowId": "child", "priority": 7.0, "createdBy": "alice", "createTime": 2000.0,
			"blockingTaskId": "gate-id", "blockingTaskReferenceName": "gate", "targetWorkflowVariables": map[string]any{"stage": "p"}},
			[]string{"taskId", "retryCount", "workflowType", "retriedTaskId"}},
		{conductor.ReturnTargetWorkflow, map[string]any{"workflowId": "parent", "priority": 2.0, "createdBy": "alice", "createTime": 1000.0,
			"targetWorkflowVariables": map[string]any{"stage": "p"}},
			[]string{"taskId", "retryCount", "workflowType", "blockingTaskId", "blockingTaskReferenceName"}},
	}
	for _, tt := range tests {
		t.Run(tt.strategy, func(t *testing.T) {
			b, err := json.Marshal(workflowRun(target, block, gate, executeParams{strategy: tt.strategy}))
			if err != nil {
				t.Fatal(err)
			}
			var got map[string]any
			if err := json.Unmarshal(b, &got); err != nil {
				t.Fatal(err)
			}
			for k, want := range tt.want {
				if !reflect.DeepEqual(got[k], want) {
					t.Errorf("%s = %v, want %v", k, got[k], want)
				}
			}
			for _, k := range tt.absent {
				if _, ok := got[k]; ok {
					t.Errorf("%s = %v, want none", k, got[k])
				}
			}
			if tt.strategy == conductor.ReturnBlockingTaskList {
				tasks, _ := got["tasks"].([]any)
				if len(tasks) != 1 {
					t.Fatalf("tasks = %v, want the blocking task alone", got["tasks"])
				}
				task := tasks[0].(map[string]any)
				for k, want := range map[string]any{"taskId": "gate-id", "referenceTaskName": "gate", "taskType": "HUMAN", "status": "IN_PROGRESS",
					"retryCount": 1.0, "retriedTaskId": "gate-0", "workerId": "ops-7", "workflowInstanceId": "child", "inputData": map[string]any{"ask": "ok?"}} {
					if !reflect.DeepEqual(task[k], want) {
						t.Errorf("tasks[0].%s = %v, want %v", k, task[k], want)
					}
				}
			}
		})
	}
}

// A wait that ended with no blocking task (it ran out, or the target
// ended) answers the strategy asked for, as Conductor's NotificationResult
// does: the workflow strategies the target workflow, the task strategies
// no task (no taskId, no tasks: the Java SDK's hasBlockingTask is false
// and getBlockingTask null) and the target's identity. It answered
// TARGET_WORKFLOW with the target's tasks, which the SDKs' getBlockingTask
// and getTaskInput refuse ("Response type TARGET_WORKFLOW does not contain
// task details").
func TestNoBlockingTaskAnswersTheStrategyAsked(t *testing.T) {
	t.Parallel()
	target := &engine.Workflow{ID: "parent", Name: "parent_flow", Status: conductor.WorkflowRunning, Priority: 2, CreatedBy: "alice", CreateTime: 1000,
		Input: map[string]any{"in": 1.0}, Variables: map[string]any{"stage": "p"}}
	target.Tasks = []*engine.Task{{ID: "w-id", Ref: "w", Name: "w", Type: conductor.TaskTypeSimple, Status: conductor.TaskScheduled}}
	for _, strategy := range []string{conductor.ReturnTargetWorkflow, conductor.ReturnBlockingWorkflow, conductor.ReturnBlockingTask,
		conductor.ReturnBlockingTaskInput, conductor.ReturnBlockingTaskList} {
		t.Run(strategy, func(t *testing.T) {
			b, err := json.Marshal(workflowRun(target, nil, nil, executeParams{strategy: strategy, requestID: "r"}))
			if err != nil {
				t.Fatal(err)
			}
			var got map[string]any
			if err := json.Unmarshal(b, &got); err != nil {
				t.Fatal(err)
			}
			for k, want := range map[string]any{"responseType": strategy, "workflowId": "parent", "targetWorkflowId": "parent", "status": "RUNNING",
				"requestId": "r", "input": map[string]any{"in": 1.0}, "targetWorkflowVariables": map[string]any{"stage": "p"}} {
				if !reflect.DeepEqual(got[k], want) {
					t.Errorf("%s = %v, want %v", k, got[k], want)
				}
			}
			for _, k := range []string{"taskId", "referenceTaskName", "retryCount", "blockingTaskId"} {
				if _, ok := got[k]; ok {
					t.Errorf("%s = %v, want none", k, got[k])
				}
			}
			tasks, _ := got["tasks"].([]any)
			workflowStrategy := strategy == conductor.ReturnTargetWorkflow || strategy == conductor.ReturnBlockingWorkflow
			if workflowStrategy != (len(tasks) == 1) {
				t.Errorf("tasks = %v", got["tasks"])
			}
		})
	}
}

// Every return strategy Conductor's SDKs send is taken, in any case;
// BLOCKING_TASK_LIST (the Java SDK's) and TARGET_WORKFLOW_OUTPUT (Conductor
// OSS's) were refused with a 400.
func TestReadExecuteParamsStrategies(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in, want string
		invalid  bool
	}{
		{"", conductor.ReturnTargetWorkflow, false},
		{"TARGET_WORKFLOW", conductor.ReturnTargetWorkflow, false},
		{"BLOCKING_WORKFLOW", conductor.ReturnBlockingWorkflow, false},
		{"BLOCKING_TASK", conductor.ReturnBlockingTask, false},
		{"BLOCKING_TASK_INPUT", conductor.ReturnBlockingTaskInput, false},
		{"BLOCKING_TASK_LIST", conductor.ReturnBlockingTaskList, false},
		{"blocking_task_list", conductor.ReturnBlockingTaskList, false},
		{"TARGET_WORKFLOW_OUTPUT", conductor.ReturnTargetWorkflowOutput, false},
		{"target_workflow_output", conductor.ReturnTargetWorkflowOutput, false},
		{"ALL_BLOCKING_TASKS", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			p, err := readExecuteParams(func(k string) string {
				if k == "returnStrategy" {
					return tt.in
				}
				return ""
			})
			if tt.invalid {
				if !errors.Is(err, fault.ErrInvalid) {
					t.Fatalf("err = %v, want invalid", err)
				}
				return
			}
			if err != nil || p.strategy != tt.want {
				t.Fatalf("strategy = %q, %v; want %q", p.strategy, err, tt.want)
			}
		})
	}
}
