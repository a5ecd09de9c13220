package api

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/flowvault/flowvault/auth"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/natsauth"
)

// CredentialIssuer issues and revokes NATS credentials of workers and
// records who asked. *natsauth.Issuer implements it.
type CredentialIssuer interface {
	IssueWorker(ctx context.Context, by string, spec natsauth.WorkerSpec, ttl time.Duration) (*natsauth.Credentials, error)
	// RevokeWorker returns once the server refuses user.
	RevokeWorker(ctx context.Context, by, user string) error
}

// CredentialLedger reads the credentials issued and revoked.
// *natsauth.Ledger implements it.
type CredentialLedger interface {
	Get(user string) (natsauth.Issued, error)
	List(keep func(natsauth.Issued) bool) ([]natsauth.Issued, error)
}

var (
	_ CredentialIssuer = (*natsauth.Issuer)(nil)
	_ CredentialLedger = (*natsauth.Ledger)(nil)
)

// maxCredentialsBody bounds POST /api/workers/credentials.
const maxCredentialsBody = 64 << 10

func (s *Server) workerRoutes() {
	// The handler decides per item: polling each queue of each task type
	// (WORKER, and EXECUTE on the type or the queue's domain), EXECUTE on
	// each workflow to start.
	s.route("POST /api/workers/credentials", auth.Authenticated, s.issueWorkerCredentials)
	// Whoever issued credentials, and admins, list and revoke them.
	s.route("GET /api/workers/credentials", auth.Authenticated, s.listWorkerCredentials)
	s.route("DELETE /api/workers/credentials/{user}", auth.Authenticated, s.revokeWorkerCredentials)
}

// errExternalNATS answers the worker credentials endpoints of a server
// that does not run its own NATS server.
var errExternalNATS = fault.NotFound("this server uses an external NATS server: its operator issues worker credentials")

// listWorkerCredentials is GET /api/workers/credentials: the credentials
// the caller issued (an admin: all), newest first; expired ones only with
// includeExpired=true. Never a seed: the server does not keep them.
func (s *Server) listWorkerCredentials(w http.ResponseWriter, r *http.Request) {
	if s.deps.WorkerCredentials == nil {
		s.writeError(w, r, errExternalNATS)
		return
	}
	expired, err := queryBool(r, "includeExpired", false)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	now := time.Now()
	list, err := s.deps.WorkerCredentialsLedger.List(func(c natsauth.Issued) bool {
		return s.mayManageCredentials(r, c) && (expired || !c.Expired(now))
	})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if list == nil {
		list = []natsauth.Issued{}
	}
	writeJSON(w, http.StatusOK, list)
}

// revokeWorkerCredentials is DELETE /api/workers/credentials/{user}: the
// server refuses the user's credentials from now on and closes its
// connections before this answers 204. Revoking credentials revoked
// before, or expired, changes nothing; credentials the caller did not
// issue read as missing (unless it is an admin).
func (s *Server) revokeWorkerCredentials(w http.ResponseWriter, r *http.Request) {
	if s.deps.WorkerCredentials == nil {
		s.writeError(w, r, errExternalNATS)
		return
	}
	user := r.PathValue("user")
	c, err := s.deps.WorkerCredentialsLedger.Get(user)
	if err == nil && !s.mayManageCredentials(r, c) {
		// Hidden from the caller, not from the trail.
		s.recordDenied(r, fmt.Errorf("%s may not revoke worker credentials %s issued by another principal: %w",
			principal(r), user, fault.ErrForbidden))
		err = fault.NotFound("worker credentials %s not found", user)
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if c.RevokedAt == 0 && !c.Expired(time.Now()) {
		if err := s.deps.WorkerCredentials.RevokeWorker(r.Context(), principal(r), user); err != nil {
			s.writeError(w, r, err)
			return
		}
	}
	w.WriteHeader(http.StatusNoContent)
}

// mayManageCredentials says whether the caller may see and revoke c: it
// issued them, or it is an admin.
func (s *Server) mayManageCredentials(r *http.Request, c natsauth.Issued) bool {
	return s.deps.Insecure || caller(r).IsAdmin() || c.IssuedBy == principal(r)
}

type workerCredentialsRequest struct {
	TaskTypes        []string `json:"taskTypes"`
	StartWorkflows   []string `json:"startWorkflows"`
	Domains          []string `json:"domains"`
	DomainsOnly      bool     `json:"domainsOnly"`
	Subscribe        []string `json:"subscribe"`
	Name             string   `json:"name"`
	ExpiresInSeconds int64    `json:"expiresInSeconds"`
}

type workerCredentialsResponse struct {
	Creds       string `json:"creds"`
	User        string `json:"user"`
	InboxPrefix string `json:"inboxPrefix"`
	Expires     int64  `json:"expires"` // Unix milliseconds
}

// issueWorkerCredentials is POST /api/workers/credentials: a NATS .creds
// file for a worker of the requested task types, allowed on NATS exactly
// what the worker protocol needs for those types, for a producer of the
// requested workflows' start requests (as the caller), and for a
// subscriber of the requested event subjects (admins only). The caller must be
// allowed to poll every queue the credentials reach over HTTP (mayPoll:
// the WORKER role and EXECUTE on the TASK_DEF, which POLL_ANY_TASK gives
// on every type, or on the queue's DOMAIN): the queue without domain of
// every type, unless domainsOnly, and its queue in each domain.
func (s *Server) issueWorkerCredentials(w http.ResponseWriter, r *http.Request) {
	if s.deps.WorkerCredentials == nil {
		s.writeError(w, r, errExternalNATS)
		return
	}
	var req workerCredentialsRequest
	if err := decodeJSON(w, r, maxCredentialsBody, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	spec := natsauth.WorkerSpec{TaskTypes: req.TaskTypes, Domains: req.Domains, DomainsOnly: req.DomainsOnly, Name: req.Name,
		StartWorkflows: req.StartWorkflows, Subscribe: req.Subscribe, Principal: principal(r)}
	if err := spec.Validate(); err != nil {
		s.writeError(w, r, err)
		return
	}
	if req.ExpiresInSeconds < 0 || req.ExpiresInSeconds > int64(natsauth.MaxWorkerTTL/time.Second) {
		s.writeError(w, r, fault.Invalid("expiresInSeconds %d: want 1 to %d (0 or absent: %d)",
			req.ExpiresInSeconds, int64(natsauth.MaxWorkerTTL/time.Second), int64(natsauth.DefaultWorkerTTL/time.Second)))
		return
	}
	// The credentials take tasks (inputs, secrets resolved) exactly as
	// polling does: the same decision, per queue. The right to a type's
	// queue without domain is a right to the type, which reaches its
	// queue in every domain too.
	queues := []string{""}
	if spec.DomainsOnly {
		queues = spec.Domains
	}
	for _, t := range spec.TaskTypes {
		for _, d := range queues {
			if err := s.mayPoll(r, t, d); err != nil {
				s.writeError(w, r, err)
				return
			}
		}
	}
	// Workflows started by publishing run as the caller, as if it had
	// started them over HTTP.
	for _, name := range spec.StartWorkflows {
		if err := s.authorize(r, auth.Execute, auth.Target{Type: auth.TargetWorkflowDef, ID: name}); err != nil {
			s.writeError(w, r, err)
			return
		}
	}
	// An event carries its workflow's data, whoever started it: no grant
	// on a workflow says who may read the events of every workflow.
	if len(spec.Subscribe) > 0 && !s.deps.Insecure && !caller(r).IsAdmin() {
		s.writeError(w, r, fmt.Errorf("subscribing to events (subscribe) needs the ADMIN role: %w", fault.ErrForbidden))
		return
	}
	c, err := s.deps.WorkerCredentials.IssueWorker(r.Context(), principal(r), spec, time.Duration(req.ExpiresInSeconds)*time.Second)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	file, err := c.File()
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	defer clear(file)
	writeJSON(w, http.StatusOK, workerCredentialsResponse{Creds: string(file), User: c.User, InboxPrefix: c.InboxPrefix,
		Expires: c.Expires.UnixMilli()})
}
