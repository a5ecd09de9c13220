package node

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/flowvault/flowvault/projections/executions"
	"github.com/flowvault/flowvault/projections/executions/query"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// waitingModel is a task index, in scheduled order, whose searches each
// remove the next workflow of remove: while the search reads (it counted
// the workflow's tasks, it lists none of them), or once it answered
// (before the next search).
type waitingModel struct {
	mu       sync.Mutex
	tasks    []*conductor.Task
	removed  map[string]bool
	remove   []string
	during   bool
	searches int
}

// matching returns the tasks of workflows still there that s's query
// matches.
func (m *waitingModel) matching(s query.Search) ([]*conductor.Task, error) {
	if !slices.Equal(s.Sort, []string{"scheduledTime:ASC"}) {
		return nil, fmt.Errorf("sort %v: this index answers scheduledTime:ASC", s.Sort)
	}
	q, err := query.Parse(s.Query, executions.TaskFields)
	if err != nil {
		return nil, err
	}
	var hits []*conductor.Task
	for _, t := range m.tasks {
		doc := func(field string) any {
			switch field {
			case "taskType":
				return t.TaskType
			case "status":
				return t.Status
			case "scheduledTime":
				return t.ScheduledTime
			}
			return nil
		}
		if !m.removed[t.WorkflowInstanceID] && q.Match(doc) {
			hits = append(hits, t)
		}
	}
	return hits, nil
}

func (m *waitingModel) removeNext() {
	if m.searches < len(m.remove) {
		m.removed[m.remove[m.searches]] = true
	}
	m.searches++
}

// EachTask answers as executions.Reader does: the tasks one search found,
// less those whose workflow is gone when it comes to them.
func (m *waitingModel) EachTask(_ context.Context, s query.Search, fn func(*conductor.Task) bool) error {
	m.mu.Lock()
	hits, err := m.matching(s)
	if err != nil {
		m.mu.Unlock()
		return err
	}
	if m.during {
		m.removeNext()
	}
	m.mu.Unlock()
	for _, t := range hits {
		m.mu.Lock()
		gone := m.removed[t.WorkflowInstanceID]
		m.mu.Unlock()
		if !gone && !fn(t) {
			break
		}
	}
	if !m.during {
		m.mu.Lock()
		m.removeNext()
		m.mu.Unlock()
	}
	return nil
}

// A delivery finds every task waiting for a webhook, once, oldest first,
// however many a search holds, when workflows are removed while it
// searches: it paged by scheduled time, and by offset through the tasks of
// one millisecond (a dynamic fork schedules its tasks at once); a page a
// removal shortened (its tasks counted, not listed) ended the search, and
// a removal between pages made it skip the tasks that moved up over them.
func TestWaitingForWebhookFindsEveryTaskWhileWorkflowsGo(t *testing.T) {
	t.Parallel()
	const forked = 120 // workflows whose dynamic forks wait at one time, 10 tasks each
	var tasks, waiting []*conductor.Task
	add := func(wfID string, at int64, n int) {
		for i := range n {
			task := &conductor.Task{TaskID: fmt.Sprintf("%s-t%02d", wfID, i), TaskType: conductor.TaskTypeWaitForWebhook,
				Status: conductor.TaskInProgress, WorkflowInstanceID: wfID, WorkflowType: "hooked", ScheduledTime: at}
			tasks, waiting = append(tasks, task), append(waiting, task)
		}
		// Neither a webhook's task that ended nor another type's in
		// progress.
		tasks = append(tasks,
			&conductor.Task{TaskID: wfID + "-done", TaskType: conductor.TaskTypeWaitForWebhook, Status: conductor.TaskCompleted,
				WorkflowInstanceID: wfID, ScheduledTime: at},
			&conductor.Task{TaskID: wfID + "-simple", TaskType: "SIMPLE", Status: conductor.TaskInProgress,
				WorkflowInstanceID: wfID, ScheduledTime: at})
	}
	const at = 1_800_000_000_000
	for i := range forked {
		add(fmt.Sprintf("wf-%03d", i), at, 10)
	}
	for i := range 3 {
		add(fmt.Sprintf("later-%d", i), at+1+int64(i), 1)
	}
	var remove []string
	for i := range 10 {
		remove = append(remove, fmt.Sprintf("wf-%03d", i)) // on the first page
	}
	for _, tc := range []struct {
		name   string
		during bool // removed while a search reads, not once it answered
	}{
		{name: "removed while a search reads", during: true},
		{name: "removed between searches"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			m := &waitingModel{tasks: tasks, removed: map[string]bool{}, remove: remove, during: tc.during}
			w := waitingForWebhook{r: m, catchUp: func(context.Context) error { return nil }}
			var got []*conductor.Task
			seen := map[string]bool{}
			err := w.WaitingForWebhook(context.Background(), func(task *conductor.Task) {
				if seen[task.TaskID] {
					t.Errorf("task %s found twice", task.TaskID)
				}
				seen[task.TaskID] = true
				got = append(got, task)
			})
			if err != nil {
				t.Fatal(err)
			}
			// What a removed workflow had waiting may be found or not;
			// everything else that waits is, in scheduled order.
			var kept, want []*conductor.Task
			for _, task := range got {
				if !m.removed[task.WorkflowInstanceID] {
					kept = append(kept, task)
				}
			}
			for _, task := range waiting {
				if !m.removed[task.WorkflowInstanceID] {
					want = append(want, task)
				}
			}
			if !slices.Equal(kept, want) {
				t.Fatalf("found %d tasks of the workflows still there, want the %d that wait, oldest first", len(kept), len(want))
			}
			for _, task := range got {
				if !slices.Contains(waiting, task) {
					t.Fatalf("found task %s, %s %s, which does not wait for a webhook", task.TaskID, task.TaskType, task.Status)
				}
			}
		})
	}
}
