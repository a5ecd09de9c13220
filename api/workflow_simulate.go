package api

import (
	"context"
	"net/http"

	"github.com/flowvault/flowvault/engine/simulate"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// taskDefLookup is implemented by definition stores that also hold task
// definitions (*metadata.Store): the test endpoint applies their retry
// policies.
type taskDefLookup interface {
	LookupTaskDef(ctx context.Context, name string) (*conductor.TaskDef, bool, error)
}

// testWorkflow is POST /api/workflow/test: it simulates a workflow with
// mocked task results (package simulate says what runs and what is
// mocked) and answers with the Workflow it ended as. Nothing is stored.
func (s *Server) testWorkflow(w http.ResponseWriter, r *http.Request) {
	var req conductor.WorkflowTestRequest
	if err := decodeJSON(w, r, maxBodyBytes, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	if req.Priority < 0 || req.Priority > 99 {
		s.writeError(w, r, fault.Invalid("priority %d: want 0-99", req.Priority))
		return
	}
	o := simulate.Options{CreatedBy: principal(r)}
	if s.deps.Definitions != nil {
		o.Defs = s.deps.Definitions
	}
	if tl, ok := s.deps.Definitions.(taskDefLookup); ok {
		ctx := r.Context()
		o.TaskDef = func(name string) *conductor.TaskDef {
			if td, found, err := tl.LookupTaskDef(ctx, name); err == nil && found {
				return td
			}
			return nil
		}
	}
	wf, err := simulate.Run(r.Context(), req, o)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, wf.Conductor(true))
}
