package api

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/flowvault/flowvault/auth"
	"github.com/flowvault/flowvault/internal/logkey"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// AuthStore is what the identity and grant endpoints need. *auth.Store
// implements it; see there for the contract of each method.
type AuthStore interface {
	CreateApplication(ctx context.Context, name, by string) (auth.Application, error)
	UpdateApplication(ctx context.Context, id, name, by string, checked *auth.Application) (auth.Application, error)
	DeleteApplication(ctx context.Context, id, by string, checked *auth.Application) error
	GetApplication(ctx context.Context, id string) (auth.Application, error)
	ListApplications(ctx context.Context) ([]auth.Application, error)
	SetApplicationRole(ctx context.Context, id, role string, remove bool, by string, checked *auth.Application) error
	ApplicationTags(ctx context.Context, id string) ([]conductor.Tag, error)
	ChangeApplicationTags(ctx context.Context, id string, tags []conductor.Tag, remove bool, by string, checked *auth.Application) error
	CreateAccessKey(ctx context.Context, appID, by string, checked *auth.Application) (auth.NewAccessKey, error)
	AccessKeys(ctx context.Context, appID string) ([]auth.AccessKey, error)
	ToggleAccessKey(ctx context.Context, appID, keyID, by string, checked *auth.Application) (auth.AccessKey, error)
	DeleteAccessKey(ctx context.Context, appID, keyID, by string, checked *auth.Application) error
	ApplicationByKey(ctx context.Context, keyID string) (auth.Application, error)

	UpsertUser(ctx context.Context, id string, req auth.UserRequest, by string) (auth.User, error)
	GetUser(ctx context.Context, id string) (auth.User, error)
	ListUsers(ctx context.Context, apps bool) ([]auth.User, error)
	DeleteUser(ctx context.Context, id, by string) error
	UpsertGroup(ctx context.Context, id string, req auth.GroupRequest, by string) (auth.Group, error)
	GetGroup(ctx context.Context, id string) (auth.Group, error)
	ListGroups(ctx context.Context) ([]auth.Group, error)
	DeleteGroup(ctx context.Context, id, by string) error
	ChangeMembers(ctx context.Context, groupID string, userIDs []string, remove bool, by string) error
	GroupMembers(ctx context.Context, groupID string) ([]auth.User, error)
	Principal(ctx context.Context, id string) (auth.Principal, error)

	Grant(ctx context.Context, g auth.Grant, by string) error
	Revoke(ctx context.Context, g auth.Grant, by string) error
	RevokeAll(ctx context.Context, s auth.Subject, targetType, by string) error
	GrantsOn(ctx context.Context, t auth.Target) ([]auth.Grant, error)
	GrantsTo(ctx context.Context, s auth.Subject, targetType string) ([]auth.Grant, error)
}

var _ AuthStore = (*auth.Store)(nil)

// TokenService mints tokens and authenticates requests. *auth.Tokens
// implements it.
type TokenService interface {
	Issue(ctx context.Context, keyID, secret string, expirationMs int64, addr string) (string, error)
	Authenticate(ctx context.Context, token string) (auth.Principal, auth.Claims, error)
}

var _ TokenService = (*auth.Tokens)(nil)

// AuthHeader carries the token on every request (Orkes's header; not
// Authorization: Bearer).
const AuthHeader = "X-Authorization"

type claimsKey struct{}

// isPublic reports whether a request is served without a token: minting
// one, and health checks. Everything else under /api needs a token.
func isPublic(r *http.Request) bool {
	p := r.URL.Path
	if p != "/api" && !strings.HasPrefix(p, "/api/") {
		return true // /health, /metrics, and later the console's assets
	}
	// HEAD as GET: the mux serves it by the GET route, and a load
	// balancer's health check may ask so.
	return (r.Method == http.MethodPost && p == "/api/token") ||
		((r.Method == http.MethodGet || r.Method == http.MethodHead) && p == "/api/health")
}

// authenticate puts the caller's principal into the request's context, or
// answers 401 with INVALID_TOKEN or EXPIRED_TOKEN (the codes the SDKs
// refresh on). In insecure dev mode every caller is auth.Anonymous.
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request) (*http.Request, bool) {
	if isPublic(r) {
		return r, true
	}
	ctx := r.Context()
	if s.deps.Insecure {
		return r.WithContext(auth.WithPrincipal(ctx, auth.Anonymous)), true
	}
	if s.deps.Tokens == nil {
		s.writeError(w, r, &auth.TokenError{Code: auth.CodeInvalidToken, Reason: "authentication is not configured on this server"})
		return nil, false
	}
	p, claims, err := s.deps.Tokens.Authenticate(ctx, r.Header.Get(AuthHeader))
	if err != nil {
		var te *auth.TokenError
		if errors.As(err, &te) {
			s.deps.Logger.Debug("request not authenticated", logkey.Method, r.Method, logkey.Path, r.URL.Path,
				logkey.Reason, te.Code, logkey.Addr, clientAddr(r))
		}
		s.recordAuthFailed(r, err)
		// The caller is nobody the server knows yet: a failure of the
		// server's (the access keys' read model out of reach) is answered
		// with a generic message, as to a webhook's sender.
		s.writePublicError(w, r, err)
		return nil, false
	}
	return asCaller(ctx, r, p, claims), true
}

// asCaller is r with context ctx, made by principal p holding a token
// with claims.
func asCaller(ctx context.Context, r *http.Request, p auth.Principal, claims auth.Claims) *http.Request {
	return r.WithContext(context.WithValue(auth.WithPrincipal(ctx, p), claimsKey{}, claims))
}

// caller is the request's authenticated principal.
func caller(r *http.Request) auth.Principal {
	p, _ := auth.PrincipalFrom(r.Context())
	return p
}

// principal is the id of who makes the request: a user id, "app:<id>",
// or "anonymous" in insecure dev mode.
func principal(r *http.Request) string { return caller(r).ID }

// route registers h for pattern behind rule: a caller the rule refuses
// gets 403 before h runs. The tables passed to routes are the route table
// of access control (pattern → rule); add a row per endpoint.
func (s *Server) route(pattern string, rule auth.Rule, h http.HandlerFunc) {
	s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		if err := s.enforce(r, rule); err != nil {
			s.writeError(w, r, err)
			return
		}
		h(w, r)
	})
}

func (s *Server) enforce(r *http.Request, rule auth.Rule) error {
	if s.deps.Insecure {
		return nil
	}
	return s.deps.Authorizer.Enforce(r.Context(), caller(r), rule, r.PathValue)
}

// authorize asks the Authorizer whether the caller may do access on t.
func (s *Server) authorize(r *http.Request, access auth.Access, t auth.Target) error {
	return s.authorizeOn(r, access, auth.Resource{Target: t})
}

// authorizeOn is authorize for a resource that says more than its target
// (its own Describer).
func (s *Server) authorizeOn(r *http.Request, access auth.Access, res auth.Resource) error {
	if s.deps.Insecure {
		return nil
	}
	return s.deps.Authorizer.Authorize(r.Context(), caller(r), access, res)
}

// messageResponse is Orkes's {"message": ...} answer.
type messageResponse struct {
	Message string `json:"message"`
}

// writeEmptyObject answers 200 {} (Orkes's "Response" body for changes
// that return nothing else).
func writeEmptyObject(w http.ResponseWriter) { writeRawJSON(w, http.StatusOK, []byte("{}")) }
