package executions_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/flowvault/flowvault/projections/executions"
	"github.com/flowvault/flowvault/projections/executions/query"
)

// The reads of a workflow's tasks, at 10 and 5,000 tasks: before, every
// task of the workflow decoded (whole); after, what the answer shows.
//
//	go test -run '^$' -bench BenchmarkTaskReads -benchmem ./projections/executions/
func BenchmarkTaskReads(b *testing.B) {
	ctx := context.Background()
	all := statusIn()
	for _, n := range []int{10, 5000} {
		var seq uint64
		r, id, w := storedLoop(b, n-1, &seq) // n tasks with the loop's
		tasks := w.Tasks
		whole := executions.WholeTaskReads(r)
		byID := query.Search{Query: fmt.Sprintf("taskId=%q", tasks[n/2].ID), Size: 100}
		notCovered := query.Search{Query: `status="COMPLETED" AND taskType="SET_VARIABLE"`, Size: 15}
		for _, bc := range []struct {
			name string
			run  func() error
		}{
			// GET /api/workflow/{id}/tasks?start=n/2&count=15.
			{"page/whole", func() error {
				w, err := r.Workflow(ctx, id)
				if err != nil {
					return err
				}
				matched := w.Tasks[min(n/2, len(w.Tasks)):]
				view := w.TaskViews()
				for _, t := range matched[:min(15, len(matched))] {
					view(t)
				}
				return nil
			}},
			{"page/after", func() error {
				head, _, _, page, err := r.WorkflowTaskPage(ctx, id, all, n/2, 15)
				if err != nil {
					return err
				}
				view := head.TaskViews()
				for _, t := range page {
					view(t)
				}
				return nil
			}},
			// GET /api/tasks/search?query=taskId="…".
			{"search-by-id/whole", func() error { _, _, err := whole.SearchTasks(ctx, byID); return err }},
			{"search-by-id/after", func() error { _, _, err := r.SearchTasks(ctx, byID); return err }},
			// The status index, a query it does not cover: every task
			// found is read.
			{"search-not-covered/whole", func() error { _, _, err := whole.SearchTasks(ctx, notCovered); return err }},
			{"search-not-covered/after", func() error { _, _, err := r.SearchTasks(ctx, notCovered); return err }},
			// GET /api/workflow/search-by-tasks?query=taskId="…": before,
			// the page's tasks rendered and their workflows read whole.
			{"search-by-tasks/whole", func() error {
				_, found, err := whole.SearchTasks(ctx, byID)
				for _, t := range found {
					if err == nil {
						_, err = r.Workflow(ctx, t.WorkflowInstanceID)
					}
				}
				return err
			}},
			{"search-by-tasks/after", func() error {
				_, ids, err := r.SearchTaskPage(ctx, byID)
				for _, id := range ids {
					if err == nil {
						_, err = r.WorkflowHead(ctx, id)
					}
				}
				return err
			}},
		} {
			b.Run(fmt.Sprintf("%s/tasks=%d", bc.name, n), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if err := bc.run(); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
