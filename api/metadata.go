package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"

	"github.com/flowvault/flowvault/auth"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/metadata"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// maxMetadataBody bounds a metadata request body. Definitions of a few
// hundred tasks stay well under it, and it leaves room below the event
// log's record limit (8 MiB).
const maxMetadataBody = 4 << 20

// Metadata is what the /api/metadata handlers need: the definition store.
// *metadata.Store implements it; see there for the contract of each method.
type Metadata interface {
	RegisterWorkflowDef(ctx context.Context, def *conductor.WorkflowDef, overwrite bool, principal string) error
	PutWorkflowDefs(ctx context.Context, defs []*conductor.WorkflowDef, principal string) (*conductor.BulkResponse, error)
	GetWorkflowDef(ctx context.Context, name string, version *int) (*conductor.WorkflowDef, error)
	ListWorkflowDefs(ctx context.Context) ([]*conductor.WorkflowDef, error)
	DeleteWorkflowDef(ctx context.Context, name string, version int, principal string) error

	RegisterTaskDefs(ctx context.Context, defs []*conductor.TaskDef, principal string) error
	UpdateTaskDef(ctx context.Context, def *conductor.TaskDef, principal string) error
	GetTaskDef(ctx context.Context, name string) (*conductor.TaskDef, error)
	ListTaskDefs(ctx context.Context) ([]*conductor.TaskDef, error)
	DeleteTaskDef(ctx context.Context, name string, principal string) error

	GetTags(ctx context.Context, kind metadata.Kind, name string) ([]conductor.Tag, error)
	AddTags(ctx context.Context, kind metadata.Kind, name string, tags []conductor.Tag, principal string) error
	SetTags(ctx context.Context, kind metadata.Kind, name string, tags []conductor.Tag, principal string) error
	DeleteTags(ctx context.Context, kind metadata.Kind, name string, tags []conductor.Tag, principal string) error
}

var _ Metadata = (*metadata.Store)(nil)

// metadataRoutes registers Conductor's /api/metadata surface
// (conductor-api.md §4.1).
// Registering a name needs CREATE on it (role permission
// CREATE_WORKFLOW_DEF / CREATE_TASK_DEF, or a grant), a new version or an
// update of an existing one UPDATE; listings show what the caller may READ.
func (s *Server) metadataRoutes() {
	on := func(targetType string, a auth.Access) auth.Rule {
		return auth.Rule{Access: a, TargetType: targetType, TargetParam: "name"}
	}
	wf, td := auth.TargetWorkflowDef, auth.TargetTaskDef
	s.route("POST /api/metadata/workflow", auth.Authenticated, s.registerWorkflowDef)
	s.route("PUT /api/metadata/workflow", auth.Authenticated, s.putWorkflowDefs)
	s.route("GET /api/metadata/workflow", auth.Authenticated, s.listWorkflowDefs)
	s.route("GET /api/metadata/workflow/{name}", on(wf, auth.Read), s.getWorkflowDef)
	s.route("DELETE /api/metadata/workflow/{name}/{version}", on(wf, auth.Delete), s.deleteWorkflowDef)

	s.route("POST /api/metadata/taskdefs", auth.Authenticated, s.registerTaskDefs)
	s.route("PUT /api/metadata/taskdefs", auth.Authenticated, s.updateTaskDef)
	s.route("GET /api/metadata/taskdefs", auth.Authenticated, s.listTaskDefs)
	s.route("GET /api/metadata/taskdefs/{name}", on(td, auth.Read), s.getTaskDef)
	s.route("DELETE /api/metadata/taskdefs/{name}", on(td, auth.Delete), s.deleteTaskDef)

	for _, k := range []struct {
		prefix, target string
		kind           metadata.Kind
	}{
		{"/api/metadata/workflow/{name}/tags", wf, metadata.KindWorkflow},
		{"/api/metadata/task/{name}/tags", td, metadata.KindTask},
	} {
		s.route("GET "+k.prefix, on(k.target, auth.Read), s.getTags(k.kind))
		s.route("POST "+k.prefix, on(k.target, auth.Update), s.changeTags(k.kind, s.deps.Metadata.AddTags))
		s.route("PUT "+k.prefix, on(k.target, auth.Update), s.changeTags(k.kind, s.deps.Metadata.SetTags))
		s.route("DELETE "+k.prefix, on(k.target, auth.Update), s.changeTags(k.kind, s.deps.Metadata.DeleteTags))
	}
}

// mayWriteWorkflowDef checks CREATE on a new workflow name, UPDATE on a
// registered one, and EXECUTE on the failureWorkflow it names: that one
// starts, unasked, whenever a run fails.
func (s *Server) mayWriteWorkflowDef(r *http.Request, def *conductor.WorkflowDef) error {
	_, err := s.deps.Metadata.GetWorkflowDef(r.Context(), def.Name, nil)
	if err := s.mayWrite(r, auth.TargetWorkflowDef, def.Name, err); err != nil {
		return err
	}
	return s.authorizeAll(r, auth.FailureWorkflowRequires(def))
}

// mayWriteTaskDef checks CREATE on a new task name, UPDATE on a
// registered one.
func (s *Server) mayWriteTaskDef(r *http.Request, name string) error {
	_, err := s.deps.Metadata.GetTaskDef(r.Context(), name)
	return s.mayWrite(r, auth.TargetTaskDef, name, err)
}

// mayWrite checks CREATE or UPDATE on name, by the outcome of looking it up.
func (s *Server) mayWrite(r *http.Request, targetType, name string, lookup error) error {
	switch {
	case errors.Is(lookup, fault.ErrNotFound):
		return s.authorize(r, auth.Create, auth.Target{Type: targetType, ID: name})
	case lookup != nil && !errors.Is(lookup, fault.ErrInvalid):
		return lookup
	}
	return s.authorize(r, auth.Update, auth.Target{Type: targetType, ID: name})
}

func (s *Server) registerWorkflowDef(w http.ResponseWriter, r *http.Request) {
	overwrite, err := queryBool(r, "overwrite", false)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	var def conductor.WorkflowDef
	if err := decodeJSON(w, r, maxMetadataBody, &def); err != nil {
		s.writeError(w, r, err)
		return
	}
	if err := s.mayWriteWorkflowDef(r, &def); err != nil {
		s.writeError(w, r, err)
		return
	}
	if err := s.deps.Metadata.RegisterWorkflowDef(r.Context(), &def, overwrite, principal(r)); err != nil {
		s.writeError(w, r, err)
		return
	}
	writeNoContent(w)
}

func (s *Server) putWorkflowDefs(w http.ResponseWriter, r *http.Request) {
	var defs []*conductor.WorkflowDef
	if err := decodeJSON(w, r, maxMetadataBody, &defs); err != nil {
		s.writeError(w, r, err)
		return
	}
	for _, d := range defs {
		if d == nil {
			continue // the store reports it
		}
		if err := s.mayWriteWorkflowDef(r, d); err != nil {
			s.writeError(w, r, err)
			return
		}
	}
	resp, err := s.deps.Metadata.PutWorkflowDefs(r.Context(), defs, principal(r))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

func (s *Server) listWorkflowDefs(w http.ResponseWriter, r *http.Request) {
	defs, err := s.deps.Metadata.ListWorkflowDefs(r.Context())
	writeReadable(s, w, r, defs, err, func(d *conductor.WorkflowDef) (auth.Target, json.RawMessage) {
		return auth.Target{Type: auth.TargetWorkflowDef, ID: d.Name}, d.Raw
	})
}

func (s *Server) getWorkflowDef(w http.ResponseWriter, r *http.Request) {
	var version *int
	if q := r.URL.Query().Get("version"); q != "" {
		v, err := strconv.Atoi(q)
		if err != nil {
			s.writeError(w, r, fault.Invalid("version %q is not an integer", q))
			return
		}
		version = &v
	}
	def, err := s.deps.Metadata.GetWorkflowDef(r.Context(), r.PathValue("name"), version)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	b, err := defJSON(def.Raw, def)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeRawJSON(w, http.StatusOK, b)
}

func (s *Server) deleteWorkflowDef(w http.ResponseWriter, r *http.Request) {
	v := r.PathValue("version")
	version, err := strconv.Atoi(v)
	if err != nil {
		s.writeError(w, r, fault.Invalid("version %q is not an integer", v))
		return
	}
	if err := s.deps.Metadata.DeleteWorkflowDef(r.Context(), r.PathValue("name"), version, principal(r)); err != nil {
		s.writeError(w, r, err)
		return
	}
	writeNoContent(w)
}

func (s *Server) registerTaskDefs(w http.ResponseWriter, r *http.Request) {
	var defs []*conductor.TaskDef
	if err := decodeJSON(w, r, maxMetadataBody, &defs); err != nil {
		s.writeError(w, r, err)
		return
	}
	for _, d := range defs {
		if d == nil {
			continue // the store reports it
		}
		if err := s.mayWriteTaskDef(r, d.Name); err != nil {
			s.writeError(w, r, err)
			return
		}
	}
	if err := s.deps.Metadata.RegisterTaskDefs(r.Context(), defs, principal(r)); err != nil {
		s.writeError(w, r, err)
		return
	}
	writeNoContent(w)
}

func (s *Server) updateTaskDef(w http.ResponseWriter, r *http.Request) {
	var def conductor.TaskDef
	if err := decodeJSON(w, r, maxMetadataBody, &def); err != nil {
		s.writeError(w, r, err)
		return
	}
	if err := s.mayWriteTaskDef(r, def.Name); err != nil {
		s.writeError(w, r, err)
		return
	}
	if err := s.deps.Metadata.UpdateTaskDef(r.Context(), &def, principal(r)); err != nil {
		s.writeError(w, r, err)
		return
	}
	writeNoContent(w)
}

func (s *Server) listTaskDefs(w http.ResponseWriter, r *http.Request) {
	defs, err := s.deps.Metadata.ListTaskDefs(r.Context())
	writeReadable(s, w, r, defs, err, func(d *conductor.TaskDef) (auth.Target, json.RawMessage) {
		return auth.Target{Type: auth.TargetTaskDef, ID: d.Name}, d.Raw
	})
}

func (s *Server) getTaskDef(w http.ResponseWriter, r *http.Request) {
	def, err := s.deps.Metadata.GetTaskDef(r.Context(), r.PathValue("name"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	b, err := defJSON(def.Raw, def)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeRawJSON(w, http.StatusOK, b)
}

func (s *Server) deleteTaskDef(w http.ResponseWriter, r *http.Request) {
	if err := s.deps.Metadata.DeleteTaskDef(r.Context(), r.PathValue("name"), principal(r)); err != nil {
		s.writeError(w, r, err)
		return
	}
	writeNoContent(w)
}

func (s *Server) getTags(kind metadata.Kind) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		tags, err := s.deps.Metadata.GetTags(r.Context(), kind, r.PathValue("name"))
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, tags)
	}
}

type tagsFunc func(ctx context.Context, kind metadata.Kind, name string, tags []conductor.Tag, principal string) error

// changeTags handles POST (add), PUT (replace) and DELETE (remove) of
// tags. The SDKs send one Tag to POST and DELETE and an array to PUT; each
// accepts either form.
func (s *Server) changeTags(kind metadata.Kind, change tagsFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var tags tagList
		if err := decodeJSON(w, r, maxMetadataBody, &tags); err != nil {
			s.writeError(w, r, err)
			return
		}
		if err := change(r.Context(), kind, r.PathValue("name"), tags, principal(r)); err != nil {
			s.writeError(w, r, err)
			return
		}
		writeNoContent(w)
	}
}

// tagList decodes a Tag object or an array of tags.
type tagList []conductor.Tag

func (l *tagList) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if bytes.Equal(b, []byte("null")) {
		return errors.New("want a tag or an array of tags, got null")
	}
	if b[0] == '{' {
		var t conductor.Tag
		if err := json.Unmarshal(b, &t); err != nil {
			return err
		}
		*l = tagList{t}
		return nil
	}
	var ts []conductor.Tag
	if err := json.Unmarshal(b, &ts); err != nil {
		return err
	}
	*l = ts
	return nil
}

// writeReadable answers a listing of definitions with those the caller may
// read, each as it was registered. describe names a definition's target
// and its registered JSON.
func writeReadable[D any](s *Server, w http.ResponseWriter, r *http.Request, defs []D, err error, describe func(D) (auth.Target, json.RawMessage)) {
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	raws := make([]json.RawMessage, 0, len(defs))
	for _, d := range defs {
		target, registered := describe(d)
		if !s.may(r, auth.Read, target) {
			continue
		}
		raw, err := defJSON(registered, d)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		raws = append(raws, raw)
	}
	writeRawArray(w, raws)
}

// defJSON is a definition as GET returns it: the stored JSON, which keeps
// fields flowvault does not model, or the struct's encoding without one.
func defJSON(raw json.RawMessage, def any) ([]byte, error) {
	if len(raw) > 0 {
		return raw, nil
	}
	return json.Marshal(def)
}
