package api

import (
	"context"
	"errors"
	"net/http"
	"strconv"

	"github.com/flowvault/flowvault/auth"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/metadata"
	"github.com/flowvault/flowvault/schemacheck"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// Schemas stores the JSON Schemas that definitions enforce
// (*metadata.Store).
type Schemas interface {
	SaveSchema(ctx context.Context, def *conductor.SchemaDef, newVersion bool, principal string) (int, error)
	RemoveSchema(ctx context.Context, name string, version *int, principal string) error
	Schema(ctx context.Context, name string, version *int) (*conductor.SchemaDef, error)
	Schemas(ctx context.Context) ([]*conductor.SchemaDef, error)
}

// schemaRoutes serve Orkes's /api/schema. Any caller reads schemas;
// changing one is the ADMIN role's, as for event handlers: a schema
// decides which starts, inputs and outputs of every definition naming it
// are refused.
func (s *Server) schemaRoutes() {
	s.route("GET /api/schema", auth.Authenticated, s.listSchemas)
	s.route("POST /api/schema", auth.Admin, s.saveSchemas)
	s.route("GET /api/schema/{name}", auth.Authenticated, s.getSchema)
	s.route("GET /api/schema/{name}/{version}", auth.Authenticated, s.getSchema)
	s.route("DELETE /api/schema/{name}", auth.Admin, s.removeSchema)
	s.route("DELETE /api/schema/{name}/{version}", auth.Admin, s.removeSchema)
}

func (s *Server) listSchemas(w http.ResponseWriter, r *http.Request) {
	short, err := queryBool(r, "short", false)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	list, err := s.deps.Schemas.Schemas(r.Context())
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if list == nil {
		list = []*conductor.SchemaDef{}
	}
	if short {
		for _, d := range list {
			d.Data = nil
		}
	}
	writeJSON(w, http.StatusOK, list)
}

// saveSchemas saves a list of schemas, each checked to compile first; a
// list with one that does not saves none.
func (s *Server) saveSchemas(w http.ResponseWriter, r *http.Request) {
	newVersion, err := queryBool(r, "newVersion", false)
	var defs []*conductor.SchemaDef
	if err == nil {
		err = decodeJSON(w, r, maxMetadataBody, &defs)
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	// Every schema is checked before any is saved.
	ve := &fault.ValidationError{}
	for i, d := range defs {
		at := "[" + strconv.Itoa(i) + "]"
		var fe *fault.ValidationError
		if err := metadata.CheckSchema(d, at); errors.As(err, &fe) {
			ve.Fields = append(ve.Fields, fe.Fields...)
			continue
		}
		if _, err := schemacheck.Compile(d); err != nil {
			ve.Add(at, "%v", err)
		}
	}
	if err := ve.Err(); err != nil {
		s.writeError(w, r, err)
		return
	}
	for _, d := range defs {
		if _, err := s.deps.Schemas.SaveSchema(r.Context(), d, newVersion, principal(r)); err != nil {
			s.writeError(w, r, err)
			return
		}
	}
	writeNoContent(w)
}

func (s *Server) getSchema(w http.ResponseWriter, r *http.Request) {
	version, err := schemaVersion(r)
	var d *conductor.SchemaDef
	if err == nil {
		d, err = s.deps.Schemas.Schema(r.Context(), r.PathValue("name"), version)
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, d)
}

func (s *Server) removeSchema(w http.ResponseWriter, r *http.Request) {
	version, err := schemaVersion(r)
	if err == nil {
		err = s.deps.Schemas.RemoveSchema(r.Context(), r.PathValue("name"), version, principal(r))
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeNoContent(w)
}

// schemaVersion is the path's version, nil when it names none.
func schemaVersion(r *http.Request) (*int, error) {
	raw := r.PathValue("version")
	if raw == "" {
		return nil, nil
	}
	v, err := strconv.Atoi(raw)
	if err != nil || v < 1 {
		return nil, fault.Invalid("version %q: want a positive integer", raw)
	}
	return &v, nil
}
