package api

import (
	"net/http"
	"sort"

	"github.com/flowvault/flowvault/auth"
	"github.com/flowvault/flowvault/fault"
)

// grantAdmin is the rule of the authorization endpoints
// (AUTHORIZATION_MANAGEMENT: admins).
var grantAdmin = auth.Rule{AnyPermission: []string{auth.PermAuthorization}}

// grantRoutes registers /api/auth (Orkes's AuthorizationResource and the
// subject grant listing of v5.4.2).
func (s *Server) grantRoutes() {
	for _, rt := range []struct {
		pattern string
		rule    auth.Rule
		h       http.HandlerFunc
	}{
		{"POST /api/auth/authorization", grantAdmin, s.changeGrant(false)},
		{"DELETE /api/auth/authorization", grantAdmin, s.changeGrant(true)},
		{"GET /api/auth/authorization/{type}/{id}", grantAdmin, s.targetGrants},
		{"GET /api/auth/subjects/{subjectType}/{subjectId}/grants",
			auth.Rule{AnyPermission: []string{auth.PermAuthorization}, SelfParam: "subjectId", SubjectTypeParam: "subjectType"}, s.subjectGrants},
		{"DELETE /api/auth/subjects/{subjectType}/{subjectId}/grants", grantAdmin, s.revokeSubjectGrants},
	} {
		s.route(rt.pattern, rt.rule, rt.h)
	}
}

// authorizationRequest is Orkes's AuthorizationRequest.
type authorizationRequest struct {
	Subject auth.Subject `json:"subject"`
	Target  auth.Target  `json:"target"`
	Access  []string     `json:"access"`
}

// changeGrant grants (POST) or revokes (DELETE) accesses. A grant to a
// user, application or group that does not exist is 404; to an unknown
// role 400.
func (s *Server) changeGrant(revoke bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var req authorizationRequest
		if err := decodeJSON(w, r, maxAuthBody, &req); err != nil {
			s.writeError(w, r, err)
			return
		}
		g := auth.Grant{Subject: req.Subject, Target: req.Target}
		for _, a := range req.Access {
			g.Access = append(g.Access, auth.Access(a))
		}
		change, msg := s.deps.Auth.Grant, "Granted permission"
		if revoke {
			change, msg = s.deps.Auth.Revoke, "Removed permission"
		}
		if err := change(r.Context(), g, principal(r)); err != nil {
			s.writeError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, messageResponse{Message: msg})
	}
}

// targetGrants lists the grants on a target, grouped by access (default:
// {"READ":[{"type":"USER","id":…}]}) or by subject
// ({"USER:jane@x":["READ"]}).
func (s *Server) targetGrants(w http.ResponseWriter, r *http.Request) {
	t, err := auth.NormalizeTarget(auth.Target{Type: r.PathValue("type"), ID: r.PathValue("id")})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	grants, err := s.deps.Auth.GrantsOn(r.Context(), t)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	switch groupBy := r.URL.Query().Get("groupBy"); groupBy {
	case "", "access":
		out := map[auth.Access][]auth.Subject{}
		for _, g := range grants {
			for _, a := range g.Access {
				out[a] = append(out[a], g.Subject)
			}
		}
		writeJSON(w, http.StatusOK, out)
	case "subject":
		out := map[string][]auth.Access{}
		for _, g := range grants {
			out[g.Subject.String()] = g.Access
		}
		writeJSON(w, http.StatusOK, out)
	default:
		s.writeError(w, r, fault.Invalid("groupBy=%q: want access or subject", groupBy))
	}
}

// subjectGrantView is one entry of a subject's grant listing.
type subjectGrantView struct {
	Target auth.Target   `json:"target"`
	Access []auth.Access `json:"access"`
}

func (s *Server) subjectGrants(w http.ResponseWriter, r *http.Request) {
	sub, resourceType, err := subjectQuery(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	grants, err := s.deps.Auth.GrantsTo(r.Context(), sub, resourceType)
	out := make([]subjectGrantView, len(grants))
	for i, g := range grants {
		out[i] = subjectGrantView{Target: g.Target, Access: g.Access}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Target.String() < out[j].Target.String() })
	s.reply(w, r, out, err)
}

func (s *Server) revokeSubjectGrants(w http.ResponseWriter, r *http.Request) {
	sub, resourceType, err := subjectQuery(r)
	if err == nil {
		err = s.deps.Auth.RevokeAll(r.Context(), sub, resourceType, principal(r))
	}
	s.reply(w, r, messageResponse{Message: "Revoked grants"}, err)
}

// subjectQuery reads {subjectType}/{subjectId} and ?resourceType=.
func subjectQuery(r *http.Request) (auth.Subject, string, error) {
	sub, err := auth.NormalizeSubject(auth.Subject{Type: r.PathValue("subjectType"), ID: r.PathValue("subjectId")})
	if err != nil {
		return sub, "", err
	}
	rt := r.URL.Query().Get("resourceType")
	if rt != "" {
		t, err := auth.NormalizeTarget(auth.Target{Type: rt, ID: "-"})
		if err != nil {
			return sub, "", err
		}
		rt = t.Type
	}
	return sub, rt, nil
}
