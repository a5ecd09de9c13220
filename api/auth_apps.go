package api

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/flowvault/flowvault/auth"
	"github.com/flowvault/flowvault/fault"
)

// maxAuthBody bounds identity and grant request bodies.
const maxAuthBody = 64 << 10

// appRule is access on the application named by the {id} (or
// {applicationId}) wildcard, or the APPLICATION_MANAGEMENT permission.
func appRule(access auth.Access, param string) auth.Rule {
	return auth.Rule{AnyPermission: []string{auth.PermApplicationManagement}, Access: access,
		TargetType: auth.TargetApplication, TargetParam: param}
}

// appRoutes registers /api/applications (Orkes's ApplicationResource).
// Creators have full access to their applications; APPLICATION_MANAGER
// and ADMIN to all.
func (s *Server) appRoutes() {
	for _, rt := range []struct {
		pattern string
		rule    auth.Rule
		h       http.HandlerFunc
	}{
		{"GET /api/applications", auth.Authenticated, s.listApplications},
		{"POST /api/applications", auth.Rule{AnyPermission: []string{auth.PermCreateApplication, auth.PermApplicationManagement}}, s.createApplication},
		// GET /api/applications/key/{keyId}, /{id}/tags and /{id}/accessKeys
		// overlap in ServeMux's eyes: one pattern, dispatched with their rules.
		{"GET /api/applications/{id}/{sub}", auth.Authenticated, s.appSubResource},
		{"GET /api/applications/{id}", appRule(auth.Read, "id"), s.getApplication},
		// The writes check access in the handler, on the application
		// they read first (checkedApp), and change that one alone.
		{"PUT /api/applications/{id}", auth.Authenticated, s.updateApplication},
		{"DELETE /api/applications/{id}", auth.Authenticated, s.deleteApplication},
		{"POST /api/applications/{applicationId}/roles/{role}", auth.Authenticated, s.setApplicationRole(false)},
		{"DELETE /api/applications/{applicationId}/roles/{role}", auth.Authenticated, s.setApplicationRole(true)},
		{"PUT /api/applications/{id}/tags", auth.Authenticated, s.changeApplicationTags(false)},
		{"DELETE /api/applications/{id}/tags", auth.Authenticated, s.changeApplicationTags(true)},
		{"POST /api/applications/{id}/accessKeys", auth.Authenticated, s.createAccessKey},
		{"POST /api/applications/{applicationId}/accessKeys/{keyId}/status", auth.Authenticated, s.toggleAccessKey},
		{"DELETE /api/applications/{applicationId}/accessKeys/{keyId}", auth.Authenticated, s.deleteAccessKey},
	} {
		s.route(rt.pattern, rt.rule, rt.h)
	}
}

// appSubResource serves GET /api/applications/key/{keyId} (any caller;
// the handler checks READ on the owning application), /{id}/tags and
// /{id}/accessKeys (READ on the application).
func (s *Server) appSubResource(w http.ResponseWriter, r *http.Request) {
	var rule auth.Rule
	var h http.HandlerFunc
	switch id, sub := r.PathValue("id"), r.PathValue("sub"); {
	case id == "key":
		r.SetPathValue("keyId", sub)
		rule, h = auth.Authenticated, s.applicationByKey
	case sub == "tags":
		rule, h = appRule(auth.Read, "id"), s.getApplicationTags
	case sub == "accessKeys":
		rule, h = appRule(auth.Read, "id"), s.listAccessKeys
	default:
		s.noEndpoint(w, r)
		return
	}
	if err := s.enforce(r, rule); err != nil {
		s.writeError(w, r, err)
		return
	}
	h(w, r)
}

type applicationRequest struct {
	Name string `json:"name"`
}

func (s *Server) listApplications(w http.ResponseWriter, r *http.Request) {
	apps, err := s.deps.Auth.ListApplications(r.Context())
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	p := caller(r)
	if s.deps.Insecure || p.IsAdmin() || p.HasPermission(auth.PermApplicationManagement) {
		writeJSON(w, http.StatusOK, apps)
		return
	}
	// Each is decided on its creator and tags as listed, the state shown,
	// not on its record when the check reads it: one tagged or untagged
	// meanwhile would be shown as listed to whom its new tags let read it.
	visible := []auth.Application{}
	for _, a := range apps {
		listed := auth.Resource{Target: appTarget(a.ID), Describer: auth.Described{Tags: auth.TagNames(a.Tags), Creator: a.CreatedBy}}
		if s.authorizeOn(r, auth.Read, listed) == nil {
			visible = append(visible, a)
		}
	}
	writeJSON(w, http.StatusOK, visible)
}

func appTarget(id string) auth.Target { return auth.Target{Type: auth.TargetApplication, ID: id} }

func (s *Server) createApplication(w http.ResponseWriter, r *http.Request) {
	var req applicationRequest
	if err := decodeJSON(w, r, maxAuthBody, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	app, err := s.deps.Auth.CreateApplication(r.Context(), req.Name, principal(r))
	s.reply(w, r, app, err)
}

func (s *Server) applicationByKey(w http.ResponseWriter, r *http.Request) {
	app, err := s.deps.Auth.ApplicationByKey(r.Context(), r.PathValue("keyId"))
	if err == nil && !caller(r).HasPermission(auth.PermApplicationManagement) {
		// Who may not read the application learns nothing about the key.
		if aerr := s.authorize(r, auth.Read, appTarget(app.ID)); aerr != nil {
			if errors.Is(aerr, fault.ErrForbidden) {
				s.recordDenied(r, aerr) // hidden from the caller, not from the trail
			}
			err = fault.NotFound("Access key %s not found", r.PathValue("keyId"))
		}
	}
	s.reply(w, r, app, err)
}

func (s *Server) getApplication(w http.ResponseWriter, r *http.Request) {
	app, err := s.deps.Auth.GetApplication(r.Context(), r.PathValue("id"))
	s.reply(w, r, app, err)
}

func (s *Server) updateApplication(w http.ResponseWriter, r *http.Request) {
	checked, err := s.checkedApp(r, "id", auth.Update, false)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	var req applicationRequest
	if err := decodeJSON(w, r, maxAuthBody, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	app, err := s.deps.Auth.UpdateApplication(r.Context(), r.PathValue("id"), req.Name, principal(r), checked)
	s.reply(w, r, app, err)
}

func (s *Server) deleteApplication(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	checked, err := s.checkedApp(r, "id", auth.Delete, true)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if err := s.deps.Auth.DeleteApplication(r.Context(), id, principal(r), checked); err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, messageResponse{Message: "Deleted Application '" + id + "'"})
}

// setApplicationRole adds or removes a role. WORKER, METADATA_API and
// APPLICATION_CREATOR need only update access to the application; the
// others (ADMIN, UNRESTRICTED_WORKER, the managers) an admin.
func (s *Server) setApplicationRole(remove bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		role := r.PathValue("role")
		if !s.deps.Insecure {
			if err := auth.CanAssignRole(caller(r), role); err != nil {
				s.writeError(w, r, err)
				return
			}
		}
		checked, err := s.checkedApp(r, "applicationId", auth.Update, false)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		err = s.deps.Auth.SetApplicationRole(r.Context(), r.PathValue("applicationId"), role, remove, principal(r), checked)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		writeEmptyObject(w)
	}
}

func (s *Server) getApplicationTags(w http.ResponseWriter, r *http.Request) {
	tags, err := s.deps.Auth.ApplicationTags(r.Context(), r.PathValue("id"))
	s.reply(w, r, tags, err)
}

// changeApplicationTags checks UPDATE on the application as its tags are
// now and changes them only if they are still those: the tags may be
// what grants the caller UPDATE, and an admin's removal of one while the
// body was on its way must not be undone by it.
func (s *Server) changeApplicationTags(remove bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		checked, err := s.checkedApp(r, "id", auth.Update, false)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		var tags tagList
		if err := decodeJSON(w, r, maxAuthBody, &tags); err != nil {
			s.writeError(w, r, err)
			return
		}
		if err := s.deps.Auth.ChangeApplicationTags(r.Context(), r.PathValue("id"), tags, remove, principal(r), checked); err != nil {
			s.writeError(w, r, err)
			return
		}
		writeNoContent(w)
	}
}

// checkedApp returns the application of path wildcard param as the read
// model holds it (nil: none) and checks access on it, read first, and
// with powers whether the caller may act as it (mayActAs): a write given
// it applies to that application alone (fault.ErrStale otherwise), so
// that one tagged otherwise, or given a role, while the caller's access
// was checked on its old state (an engine whose read model lags) is left
// as it is.
func (s *Server) checkedApp(r *http.Request, param string, access auth.Access, powers bool) (*auth.Application, error) {
	id := r.PathValue(param)
	app, err := s.deps.Auth.GetApplication(r.Context(), id)
	var checked *auth.Application
	switch {
	case err == nil:
		checked = &app
	case !errors.Is(err, fault.ErrNotFound):
		return nil, err
	}
	if err := s.enforce(r, appRule(access, param)); err != nil {
		return nil, err
	}
	if powers {
		if err := s.mayActAs(r, id); err != nil {
			return nil, err
		}
	}
	return checked, nil
}

// mayActAs refuses an act that gives the caller application id's powers,
// or takes them from their holders (an access key made, paused or
// deleted; the application deleted), unless the caller may give every role
// the application holds: UPDATE on an application, which its creator,
// APPLICATION_MANAGER and tag grants give, does not make an admin of who
// mints a key for an ADMIN application.
func (s *Server) mayActAs(r *http.Request, id string) error {
	if s.deps.Insecure {
		return nil
	}
	app, err := s.deps.Auth.Principal(r.Context(), auth.AppPrefix+id)
	if errors.Is(err, fault.ErrNotFound) {
		return nil // the store answers for a missing application
	}
	if err != nil {
		return err
	}
	for _, role := range app.Roles {
		if err := auth.CanAssignRole(caller(r), role); err != nil {
			return fmt.Errorf("application %s holds role %s: %w", id, role, err)
		}
	}
	return nil
}

// createAccessKey answers {"id","secret"}: the only time the secret is
// ever shown.
func (s *Server) createAccessKey(w http.ResponseWriter, r *http.Request) {
	checked, err := s.checkedApp(r, "id", auth.Update, true)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	key, err := s.deps.Auth.CreateAccessKey(r.Context(), r.PathValue("id"), principal(r), checked)
	s.reply(w, r, key, err)
}

func (s *Server) listAccessKeys(w http.ResponseWriter, r *http.Request) {
	keys, err := s.deps.Auth.AccessKeys(r.Context(), r.PathValue("id"))
	s.reply(w, r, keys, err)
}

func (s *Server) toggleAccessKey(w http.ResponseWriter, r *http.Request) {
	checked, err := s.checkedApp(r, "applicationId", auth.Update, true)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	key, err := s.deps.Auth.ToggleAccessKey(r.Context(), r.PathValue("applicationId"), r.PathValue("keyId"), principal(r), checked)
	s.reply(w, r, key, err)
}

func (s *Server) deleteAccessKey(w http.ResponseWriter, r *http.Request) {
	checked, err := s.checkedApp(r, "applicationId", auth.Update, true)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if err := s.deps.Auth.DeleteAccessKey(r.Context(), r.PathValue("applicationId"), r.PathValue("keyId"), principal(r), checked); err != nil {
		s.writeError(w, r, err)
		return
	}
	writeEmptyObject(w)
}
