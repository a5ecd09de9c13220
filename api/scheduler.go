package api

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"

	"github.com/flowvault/flowvault/auth"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/masking"
	"github.com/flowvault/flowvault/projections/executions/query"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// Schedules is what the scheduler endpoints need.
type Schedules interface {
	Save(ctx context.Context, def *conductor.WorkflowSchedule, principal string, checked *conductor.WorkflowSchedule) error
	Get(ctx context.Context, name string) (*conductor.WorkflowSchedule, error)
	GetChecked(ctx context.Context, name string, checked *conductor.WorkflowSchedule) (*conductor.WorkflowSchedule, error)
	List(ctx context.Context, workflowName string) ([]*conductor.WorkflowSchedule, error)
	Delete(ctx context.Context, name, principal string, checked *conductor.WorkflowSchedule) error
	SetPaused(ctx context.Context, name string, paused bool, reason, principal string, checked *conductor.WorkflowSchedule) error
	PauseAll(ctx context.Context, principal string) (int, error)
	ResumeAll(ctx context.Context, principal string) (int, error)
	Tags(ctx context.Context, name string, checked *conductor.WorkflowSchedule) ([]conductor.Tag, error)
	ChangeTags(ctx context.Context, name string, tags []conductor.Tag, remove bool, principal string, checked *conductor.WorkflowSchedule) error
	Executions(ctx context.Context, search query.Search, visible func(name string) (*conductor.WorkflowSchedule, bool)) ([]conductor.ScheduleExecution, int, error)
}

// NextFewFunc lists a cron expression's next fire times.
type NextFewFunc func(cron string, start, end int64, limit int) ([]int64, error)

// A schedule is owned by its creator and runs as it. Saving one needs
// CREATE (a new name) or UPDATE on it, and EXECUTE on the workflow it
// starts: a schedule cannot start what its owner could not.
func (s *Server) routeScheduler() {
	if s.deps.Schedules == nil {
		return
	}
	sc := s.deps.Schedules
	s.route("POST /api/scheduler/schedules", auth.Authenticated, func(w http.ResponseWriter, r *http.Request) {
		var def conductor.WorkflowSchedule
		if err := decodeJSON(w, r, maxBodyBytes, &def); err != nil {
			s.writeError(w, r, err)
			return
		}
		current, lookup := sc.Get(r.Context(), def.Name)
		err := s.mayWrite(r, auth.TargetWorkflowSchedule, def.Name, lookup)
		if err == nil && def.StartWorkflowRequest != nil {
			err = s.mayStart(r, *def.StartWorkflowRequest)
		}
		if err == nil && def.StartWorkflowRequest != nil && def.StartWorkflowRequest.WorkflowDef != nil {
			err = s.checkInlineDef("startWorkflowRequest.workflowDef", def.StartWorkflowRequest)
		}
		if err == nil {
			var fields []string
			if fields, err = s.maskedFields(r.Context(), def.StartWorkflowRequest); err == nil {
				err = refuseMaskedFields(def.StartWorkflowRequest, fields)
			}
		}
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		s.reply(w, r, nil, sc.Save(r.Context(), &def, principal(r), current))
	})
	s.route("GET /api/scheduler/schedules", auth.Authenticated, func(w http.ResponseWriter, r *http.Request) {
		list, err := sc.List(r.Context(), r.URL.Query().Get("workflowName"))
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		list, err = s.readableSchedules(r, list, nil)
		s.reply(w, r, list, err)
	})
	// Orkes's getSchedulesByTag. This literal route wins over
	// schedules/{name}: "tags" is not taken for a schedule's name.
	s.route("GET /api/scheduler/schedules/tags", auth.Authenticated, func(w http.ResponseWriter, r *http.Request) {
		tag := r.URL.Query().Get("tag")
		key, value, ok := strings.Cut(tag, ":")
		if !ok || key == "" {
			s.writeError(w, r, fault.Invalid("tag %q: want key:value", tag))
			return
		}
		list, err := sc.List(r.Context(), "")
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		want := conductor.Tag{Key: key, Value: value}
		list, err = s.readableSchedules(r, list, func(def *conductor.WorkflowSchedule) bool {
			return slices.Contains(def.Tags, want)
		})
		s.reply(w, r, list, err)
	})
	// Reads show the schedule the caller's access was checked on, as
	// writes change only that one.
	s.route("GET /api/scheduler/schedules/{name}", auth.Authenticated, func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		current, err := s.checkedSchedule(r, name, auth.Read)
		var def *conductor.WorkflowSchedule
		if err == nil {
			def, err = sc.GetChecked(r.Context(), name, current)
		}
		if err == nil {
			def.StartWorkflowRequest, err = s.maskRequest(r.Context(), def.StartWorkflowRequest)
		}
		s.reply(w, r, def, err)
	})
	s.route("DELETE /api/scheduler/schedules/{name}", auth.Authenticated, func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		current, err := s.checkedSchedule(r, name, auth.Delete)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		s.reply(w, r, nil, sc.Delete(r.Context(), name, principal(r), current))
	})
	for path, paused := range map[string]bool{"pause": true, "resume": false} {
		s.route("GET /api/scheduler/schedules/{name}/"+path, auth.Authenticated, func(w http.ResponseWriter, r *http.Request) {
			name := r.PathValue("name")
			current, err := s.checkedSchedule(r, name, auth.Update)
			if err != nil {
				s.writeError(w, r, err)
				return
			}
			reason := "" // resuming clears it
			if paused {
				reason = r.URL.Query().Get("reason") // the JS SDK's pauseSchedule(name, reason)
			}
			// The OpenAPI document answers an empty object, not 204.
			s.reply(w, r, map[string]any{}, sc.SetPaused(r.Context(), name, paused, reason, principal(r), current))
		})
		s.route("PUT /api/scheduler/bulk/"+path, auth.Authenticated, func(w http.ResponseWriter, r *http.Request) {
			var names []string
			if err := decodeJSON(w, r, maxBodyBytes, &names); err != nil {
				s.writeError(w, r, err)
				return
			}
			res := conductor.NewBulkResponse()
			for _, n := range names {
				current, err := s.checkedSchedule(r, n, auth.Update)
				if err == nil {
					err = sc.SetPaused(r.Context(), n, paused, "", principal(r), current)
				}
				if err != nil {
					res.BulkErrorResults[n] = errorMessage(err)
				} else {
					res.BulkSuccessfulResults = append(res.BulkSuccessfulResults, n)
				}
			}
			writeJSON(w, http.StatusOK, res)
		})
	}
	// Orkes's admin switches, for admins only: they act on schedules the
	// caller may hold no grant on. Each answers a map, as Orkes's do.
	s.route("GET /api/scheduler/admin/pause", auth.Admin, func(w http.ResponseWriter, r *http.Request) {
		n, err := sc.PauseAll(r.Context(), principal(r))
		s.reply(w, r, map[string]any{"paused": n}, err)
	})
	s.route("GET /api/scheduler/admin/resume", auth.Admin, func(w http.ResponseWriter, r *http.Request) {
		n, err := sc.ResumeAll(r.Context(), principal(r))
		s.reply(w, r, map[string]any{"resumed": n}, err)
	})
	// Orkes keeps a queue of execution records for its firers, which this
	// puts back. Here a tick is claimed in the schedule's stream and a
	// claim not yet started is taken up again at every scan, from the log,
	// so there is no queue to lose one from: nothing to do.
	s.route("GET /api/scheduler/admin/requeue", auth.Admin, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{})
	})
	s.route("GET /api/scheduler/schedules/{name}/tags", auth.Authenticated, func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		current, err := s.checkedSchedule(r, name, auth.Read)
		var tags []conductor.Tag
		if err == nil {
			tags, err = sc.Tags(r.Context(), name, current)
		}
		s.reply(w, r, tags, err)
	})
	for method, remove := range map[string]bool{"PUT": false, "DELETE": true} {
		s.route(method+" /api/scheduler/schedules/{name}/tags", auth.Authenticated, func(w http.ResponseWriter, r *http.Request) {
			// Checked on this schedule, applied to it alone: a tag
			// granting access must not land on one created again by
			// another principal meanwhile.
			name := r.PathValue("name")
			current, err := s.checkedSchedule(r, name, auth.Update)
			if err != nil {
				s.writeError(w, r, err)
				return
			}
			var tags []conductor.Tag
			if err := decodeJSON(w, r, maxBodyBytes, &tags); err != nil {
				s.writeError(w, r, err)
				return
			}
			s.reply(w, r, nil, sc.ChangeTags(r.Context(), name, tags, remove, principal(r), current))
		})
	}
	// Schedule executions name schedules and workflows: for those who
	// manage schedules or search executions.
	executions := auth.Rule{AnyPermission: []string{auth.PermScheduleManagement, auth.PermWorkflowSearch}}
	s.route("GET /api/scheduler/search/executions", executions, func(w http.ResponseWriter, r *http.Request) {
		start, size, err := paging(r)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		q := r.URL.Query()
		search := query.Search{Query: q.Get("query"), FreeText: q.Get("freeText"), Sort: q["sort"], Start: start, Size: size}
		// Each execution shows only to those who may read its schedule,
		// checked once per schedule.
		xs, total, err := sc.Executions(r.Context(), search, func(name string) (*conductor.WorkflowSchedule, bool) {
			current, err := s.checkedSchedule(r, name, auth.Read)
			return current, err == nil
		})
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		for i := range xs {
			if xs[i].Request, err = s.maskRequest(r.Context(), xs[i].Request); err != nil {
				s.writeError(w, r, err)
				return
			}
		}
		writeJSON(w, http.StatusOK, map[string]any{"totalHits": total, "results": xs})
	})
	if s.deps.NextFew != nil {
		s.route("GET /api/scheduler/nextFewSchedules", auth.Authenticated, func(w http.ResponseWriter, r *http.Request) {
			q := r.URL.Query()
			ve := &fault.ValidationError{}
			param := func(name string, def int64) int64 {
				n, err := int64Param(q.Get(name), def)
				if err != nil {
					ve.Add(name, "%v", err)
				}
				return n
			}
			start, end, limit := param("scheduleStartTime", 0), param("scheduleEndTime", 0), param("limit", 3)
			if err := ve.Err(); err != nil {
				s.writeError(w, r, err)
				return
			}
			times, err := s.deps.NextFew(q.Get("cronExpression"), start, end, int(limit))
			s.reply(w, r, times, err)
		})
	}
}

// readableSchedules returns those of list the caller may read (and keep
// accepts, when given), so a list never shows a hidden schedule. Each is
// decided on its owner and tags in list, the state shown, not on what
// holds its name when the check reads it: one deleted and saved again by
// someone else meanwhile would show the former one to the new one's
// owner. A list whose masking cannot be decided (maskRequest) is not
// shown at all.
func (s *Server) readableSchedules(r *http.Request, list []*conductor.WorkflowSchedule, keep func(*conductor.WorkflowSchedule) bool) ([]*conductor.WorkflowSchedule, error) {
	out := make([]*conductor.WorkflowSchedule, 0, len(list))
	for _, def := range list {
		listed := auth.Resource{Target: auth.Target{Type: auth.TargetWorkflowSchedule, ID: def.Name},
			Describer: auth.Described{Tags: auth.TagNames(def.Tags), Creator: def.CreatedBy}}
		if (keep == nil || keep(def)) && s.authorizeOn(r, auth.Read, listed) == nil {
			var err error
			if def.StartWorkflowRequest, err = s.maskRequest(r.Context(), def.StartWorkflowRequest); err != nil {
				return nil, err
			}
			out = append(out, def)
		}
	}
	return out, nil
}

// maskedFields are the input fields the workflow req starts masks: its
// inline definition's maskedFields, else the registered definition's (none
// when no definition has the name). A lookup that fails otherwise fails,
// unavailable: read as "none", it would let a masked field be stored, or
// shown, in plain text.
func (s *Server) maskedFields(ctx context.Context, req *conductor.StartWorkflowRequest) ([]string, error) {
	switch {
	case req == nil:
		return nil, nil
	case req.WorkflowDef != nil:
		return req.WorkflowDef.MaskedFields, nil
	case s.deps.Definitions == nil:
		return nil, nil
	}
	def, err := s.deps.Definitions.LookupWorkflowDef(ctx, req.Name, req.Version)
	switch err = auth.LookupFault(req.Name, err); {
	case errors.Is(err, fault.ErrNotFound):
		return nil, nil
	case err != nil:
		return nil, err
	}
	return def.MaskedFields, nil
}

// maskRequest returns req with the input fields its workflow masks
// reading "***", as the workflow it starts shows them. Saving refuses such
// input; this covers fields a definition came to mask later.
func (s *Server) maskRequest(ctx context.Context, req *conductor.StartWorkflowRequest) (*conductor.StartWorkflowRequest, error) {
	fields, err := s.maskedFields(ctx, req)
	if err != nil {
		return nil, err
	}
	if len(fields) == 0 {
		return req, nil
	}
	c := *req
	c.Input = masking.Fields(c.Input, fields)
	return &c, nil
}

// refuseMaskedFields refuses a schedule whose input sets a field its
// workflow masks: a workflow seals such a value before storing it, a
// schedule would store it in plain text.
func refuseMaskedFields(req *conductor.StartWorkflowRequest, fields []string) error {
	if req == nil {
		return nil
	}
	ve := &fault.ValidationError{}
	for _, f := range fields {
		if _, ok := req.Input[f]; ok {
			ve.Add("startWorkflowRequest.input."+f, "%s", "the workflow masks this field, and a schedule's input is stored in plain text; "+
				"store the value with PUT /api/secrets/{key} and reference it as ${workflow.secrets.NAME} in the workflow definition")
		}
	}
	return ve.Err()
}

// reply answers with v as JSON, 204 when v is nil, or the error.
func (s *Server) reply(w http.ResponseWriter, r *http.Request, v any, err error) {
	switch {
	case err != nil:
		s.writeError(w, r, err)
	case v == nil:
		writeNoContent(w)
	default:
		writeJSON(w, http.StatusOK, v)
	}
}

// paging reads start (default 0) and size (default 100, at most 1000).
func paging(r *http.Request) (int, int, error) {
	start, err := int64Param(r.URL.Query().Get("start"), 0)
	if err != nil {
		return 0, 0, err
	}
	size, err := int64Param(r.URL.Query().Get("size"), 100)
	if err != nil {
		return 0, 0, err
	}
	if start < 0 || size < 0 || size > 1000 {
		return 0, 0, fault.Invalid("paging start=%d size=%d: want start >= 0 and size 0-1000", start, size)
	}
	return int(start), int(size), nil
}

func int64Param(v string, def int64) (int64, error) {
	if v == "" {
		return def, nil
	}
	n, err := conductor.ParseInt(v, 64)
	if err != nil {
		return 0, fault.Invalid("%q is not an integer", v)
	}
	return n, nil
}

// defChecker validates a definition that runs without being registered
// (metadata.Store).
type defChecker interface {
	CheckWorkflowDef(def *conductor.WorkflowDef) error
}

// checkInlineDef validates the inline definition a stored request starts
// (a schedule's) as the start would: saved unchecked, one without tasks
// failed every run. Its paths are under path.
func (s *Server) checkInlineDef(path string, req *conductor.StartWorkflowRequest) error {
	c, ok := s.deps.Definitions.(defChecker)
	if !ok {
		return nil
	}
	def := *req.WorkflowDef
	if def.Name == "" {
		def.Name = req.Name // as the start takes it
	}
	return fault.Within(path, c.CheckWorkflowDef(&def))
}

// checkedSchedule returns schedule name as the read model holds it (nil:
// none) and checks access on it, read first: a write given it applies to
// that schedule alone (fault.ErrConflict otherwise), so that one deleted
// and created again by another principal while the caller's access was
// checked on the old one is not changed by the caller.
func (s *Server) checkedSchedule(r *http.Request, name string, access auth.Access) (*conductor.WorkflowSchedule, error) {
	current, lookup := s.deps.Schedules.Get(r.Context(), name)
	if lookup != nil && !errors.Is(lookup, fault.ErrNotFound) && !errors.Is(lookup, fault.ErrInvalid) {
		return nil, lookup
	}
	if err := s.authorize(r, access, auth.Target{Type: auth.TargetWorkflowSchedule, ID: name}); err != nil {
		return nil, err
	}
	return current, nil
}
