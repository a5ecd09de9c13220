package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/flowvault/flowvault/auth"
	"github.com/flowvault/flowvault/engine/simulate"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/masking"
	"github.com/flowvault/flowvault/metadata"
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
	// A simulation shows the definitions it ran: each one the caller may
	// read, or, sent inline, may start (CREATE on its name).
	if req.WorkflowDef != nil {
		if err := s.mayStart(r, req.StartWorkflowRequest); err != nil {
			s.writeError(w, r, err)
			return
		}
	}
	var hidden [][]byte
	o := simulate.Options{CreatedBy: principal(r), Operators: s.deps.Operators,
		Hide: func(plain []byte) { hidden = append(hidden, plain) }}
	if s.deps.Definitions != nil {
		o.Defs = readableDefs{s: s, r: r}
	}
	if tl, ok := s.deps.Definitions.(taskDefLookup); ok {
		ctx := r.Context()
		o.TaskDef = func(name string) *conductor.TaskDef {
			// One the caller may not read runs on defaults: the
			// simulation shows each task's definition.
			if s.authorize(r, auth.Read, auth.Target{Type: auth.TargetTaskDef, ID: name}) != nil {
				return nil
			}
			if td, found, err := tl.LookupTaskDef(ctx, name); err == nil && found {
				return td
			}
			return nil
		}
	}
	// Scripts run for real: a loop of slow ones must not hold the server
	// for as long as its steps allow.
	ctx, cancel := context.WithTimeout(r.Context(), maxSimulation)
	defer cancel()
	wf, err := simulate.Run(ctx, req, o)
	if errors.Is(err, context.DeadlineExceeded) {
		err = fault.Invalid("the test ran longer than %s: its scripts take too long", maxSimulation)
	}
	var view any
	if err == nil {
		view, err = redactedView(wf.Conductor(true), masking.NewRedactor(masking.WithParts(hidden)...))
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, view)
}

// redactedView is view with the values r redacts read as "***", as a run's
// views show the values it sealed wherever the run copied them: the
// simulation seals nothing, and a mock's _secrets value copied into a
// variable, the output or another task's input was shown as it is.
func redactedView(view *conductor.Workflow, r *masking.Redactor) (any, error) {
	if r.Empty() {
		return view, nil
	}
	b, err := json.Marshal(view)
	if err != nil {
		return nil, fmt.Errorf("render the simulation: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var doc any
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("render the simulation: %w", err)
	}
	return r.Value(doc), nil
}

// maxSimulation bounds the time one test may run its scripts.
const maxSimulation = 30 * time.Second

// readableDefs looks up the definitions the caller may read; one it may
// not reads as missing, so that names cannot be probed.
type readableDefs struct {
	s *Server
	r *http.Request
}

func (d readableDefs) LookupWorkflowDef(ctx context.Context, name string, version *int) (*conductor.WorkflowDef, error) {
	err := d.s.authorize(d.r, auth.Read, auth.Target{Type: auth.TargetWorkflowDef, ID: name})
	if errors.Is(err, fault.ErrForbidden) {
		return nil, metadata.WorkflowNotFound(name, version)
	}
	if err != nil {
		return nil, err
	}
	return d.s.deps.Definitions.LookupWorkflowDef(ctx, name, version)
}
