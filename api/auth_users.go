package api

import (
	"context"
	"errors"
	"net/http"

	"github.com/flowvault/flowvault/auth"
	"github.com/flowvault/flowvault/fault"
)

// userAdmin is the rule of the user and group endpoints: admins only
// (USER_MANAGEMENT), as in Orkes.
var userAdmin = auth.Rule{AnyPermission: []string{auth.PermUserManagement}}

// selfOrAdmin also lets a user read its own record.
func selfOrAdmin(param string) auth.Rule {
	return auth.Rule{AnyPermission: []string{auth.PermUserManagement}, SelfParam: param}
}

// userRoutes registers /api/users and /api/groups (Orkes's UserResource
// and GroupResource).
func (s *Server) userRoutes() {
	for _, rt := range []struct {
		pattern string
		rule    auth.Rule
		h       http.HandlerFunc
	}{
		{"GET /api/users", userAdmin, s.listUsers},
		{"GET /api/users/{id}", selfOrAdmin("id"), s.getUser},
		{"PUT /api/users/{id}", userAdmin, s.upsertUser},
		{"DELETE /api/users/{id}", userAdmin, s.deleteUser},
		{"GET /api/users/{userId}/permissions", selfOrAdmin("userId"), s.userPermissions},
		{"GET /api/users/{userId}/checkPermissions", userAdmin, s.checkPermissions},
		{"GET /api/groups", userAdmin, s.listGroups},
		{"GET /api/groups/{id}", userAdmin, s.getGroup},
		{"PUT /api/groups/{id}", userAdmin, s.upsertGroup},
		{"DELETE /api/groups/{id}", userAdmin, s.deleteGroup},
		{"GET /api/groups/{id}/users", userAdmin, s.groupUsers},
		{"POST /api/groups/{groupId}/users/{userId}", userAdmin, s.changeMember(false)},
		{"DELETE /api/groups/{groupId}/users/{userId}", userAdmin, s.changeMember(true)},
		{"POST /api/groups/{groupId}/users", userAdmin, s.changeMembers(false)},
		{"DELETE /api/groups/{groupId}/users", userAdmin, s.changeMembers(true)},
		{"GET /api/groups/{groupId}/permissions", userAdmin, s.groupPermissions},
	} {
		s.route(rt.pattern, rt.rule, rt.h)
	}
}

// roleView is Orkes's Role: a name and the permissions it carries.
type roleView struct {
	Name        string           `json:"name"`
	Permissions []permissionView `json:"permissions"`
}

type permissionView struct {
	Name string `json:"name"`
}

func rolesView(roles []string) []roleView {
	out := make([]roleView, len(roles))
	for i, r := range roles {
		perms := auth.Principal{Roles: []string{r}}.Permissions()
		out[i] = roleView{Name: r, Permissions: make([]permissionView, len(perms))}
		for j, p := range perms {
			out[i].Permissions[j] = permissionView{Name: p}
		}
	}
	return out
}

// groupView is Orkes's Group.
type groupView struct {
	ID                 string                   `json:"id"`
	Description        string                   `json:"description"`
	Roles              []roleView               `json:"roles"`
	DefaultAccess      map[string][]auth.Access `json:"defaultAccess"`
	ContactInformation map[string]string        `json:"contactInformation"`
}

func viewGroup(g auth.Group) groupView {
	return groupView{ID: g.ID, Description: g.Description, Roles: rolesView(g.Roles), DefaultAccess: g.DefaultAccess,
		ContactInformation: map[string]string{}}
}

// userView is Orkes's ConductorUser: roles with their permissions, and
// the groups (with their roles) the user belongs to.
type userView struct {
	ID                      string            `json:"id"`
	Name                    string            `json:"name"`
	Roles                   []roleView        `json:"roles"`
	Groups                  []groupView       `json:"groups"`
	ApplicationUser         bool              `json:"applicationUser"`
	OrkesWorkersApp         bool              `json:"orkesWorkersApp"`
	EncryptedID             bool              `json:"encryptedId"`
	EncryptedIDDisplayValue string            `json:"encryptedIdDisplayValue"`
	ContactInformation      map[string]string `json:"contactInformation"`
}

func (s *Server) viewUser(ctx context.Context, u auth.User) (userView, error) {
	v := userView{ID: u.ID, Name: u.Name, Roles: rolesView(u.Roles), Groups: []groupView{}, ApplicationUser: u.ApplicationUser,
		EncryptedIDDisplayValue: u.ID, ContactInformation: map[string]string{}}
	for _, gid := range u.Groups {
		g, err := s.deps.Auth.GetGroup(ctx, gid)
		if errors.Is(err, fault.ErrNotFound) {
			continue
		}
		if err != nil {
			return userView{}, err
		}
		v.Groups = append(v.Groups, viewGroup(g))
	}
	return v, nil
}

func (s *Server) writeUsers(w http.ResponseWriter, r *http.Request, users []auth.User, err error) {
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out := make([]userView, len(users))
	for i, u := range users {
		if out[i], err = s.viewUser(r.Context(), u); err != nil {
			s.writeError(w, r, err)
			return
		}
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) writeUser(w http.ResponseWriter, r *http.Request, u auth.User, err error) {
	var v userView
	if err == nil {
		v, err = s.viewUser(r.Context(), u)
	}
	s.reply(w, r, v, err)
}

func (s *Server) listUsers(w http.ResponseWriter, r *http.Request) {
	apps, err := queryBool(r, "apps", false)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	users, err := s.deps.Auth.ListUsers(r.Context(), apps)
	s.writeUsers(w, r, users, err)
}

func (s *Server) getUser(w http.ResponseWriter, r *http.Request) {
	u, err := s.deps.Auth.GetUser(r.Context(), r.PathValue("id"))
	s.writeUser(w, r, u, err)
}

func (s *Server) upsertUser(w http.ResponseWriter, r *http.Request) {
	var req auth.UserRequest
	if err := decodeJSON(w, r, maxAuthBody, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	u, err := s.deps.Auth.UpsertUser(r.Context(), r.PathValue("id"), req, principal(r))
	s.writeUser(w, r, u, err)
}

func (s *Server) deleteUser(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := s.deps.Auth.DeleteUser(r.Context(), id, principal(r)); err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, messageResponse{Message: "Deleted user '" + id + "'"})
}

// grantedAccessResponse is Orkes's GrantedAccessResponse.
type grantedAccessResponse struct {
	GrantedAccess []auth.GrantedAccess `json:"grantedAccess"`
}

// userPermissions lists what the grants to a user, its groups and its
// roles give it; tag grants are expanded with their tag recorded.
func (s *Server) userPermissions(w http.ResponseWriter, r *http.Request) {
	p, err := s.deps.Auth.Principal(r.Context(), r.PathValue("userId"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.writeGrantedAccess(w, r, auth.PrincipalSubjects(p))
}

func (s *Server) groupPermissions(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("groupId")
	if _, err := s.deps.Auth.GetGroup(r.Context(), id); err != nil {
		s.writeError(w, r, err)
		return
	}
	s.writeGrantedAccess(w, r, []auth.Subject{{Type: auth.SubjectGroup, ID: id}})
}

func (s *Server) writeGrantedAccess(w http.ResponseWriter, r *http.Request, subjects []auth.Subject) {
	granted, err := s.deps.Authorizer.GrantedAccess(r.Context(), subjects)
	s.reply(w, r, grantedAccessResponse{GrantedAccess: granted}, err)
}

// checkPermissions answers {"CREATE":bool,"READ":bool,...} for a user on
// one target, from the same Authorizer every request is checked with.
func (s *Server) checkPermissions(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	t, err := auth.NormalizeTarget(auth.Target{Type: q.Get("type"), ID: q.Get("id")})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	p, err := s.deps.Auth.Principal(r.Context(), r.PathValue("userId"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	res, err := s.deps.Authorizer.CheckAll(r.Context(), p, auth.Resource{Target: t})
	s.reply(w, r, res, err)
}

func (s *Server) listGroups(w http.ResponseWriter, r *http.Request) {
	groups, err := s.deps.Auth.ListGroups(r.Context())
	out := make([]groupView, len(groups))
	for i, g := range groups {
		out[i] = viewGroup(g)
	}
	s.reply(w, r, out, err)
}

func (s *Server) getGroup(w http.ResponseWriter, r *http.Request) {
	g, err := s.deps.Auth.GetGroup(r.Context(), r.PathValue("id"))
	s.reply(w, r, viewGroup(g), err)
}

func (s *Server) upsertGroup(w http.ResponseWriter, r *http.Request) {
	var req auth.GroupRequest
	if err := decodeJSON(w, r, maxAuthBody, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	g, err := s.deps.Auth.UpsertGroup(r.Context(), r.PathValue("id"), req, principal(r))
	s.reply(w, r, viewGroup(g), err)
}

func (s *Server) deleteGroup(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := s.deps.Auth.DeleteGroup(r.Context(), id, principal(r)); err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, messageResponse{Message: "Deleted group '" + id + "'"})
}

func (s *Server) groupUsers(w http.ResponseWriter, r *http.Request) {
	users, err := s.deps.Auth.GroupMembers(r.Context(), r.PathValue("id"))
	s.writeUsers(w, r, users, err)
}

func (s *Server) changeMember(remove bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		err := s.deps.Auth.ChangeMembers(r.Context(), r.PathValue("groupId"), []string{r.PathValue("userId")}, remove, principal(r))
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		writeEmptyObject(w)
	}
}

// changeMembers adds or removes the users of a JSON array of ids.
func (s *Server) changeMembers(remove bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var ids []string
		if err := decodeJSON(w, r, maxAuthBody, &ids); err != nil {
			s.writeError(w, r, err)
			return
		}
		if err := s.deps.Auth.ChangeMembers(r.Context(), r.PathValue("groupId"), ids, remove, principal(r)); err != nil {
			s.writeError(w, r, err)
			return
		}
		writeEmptyObject(w)
	}
}
