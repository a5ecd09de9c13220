package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/flowvault/flowvault/audit"
	"github.com/flowvault/flowvault/auth"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/projections"
	"github.com/flowvault/flowvault/schemas"
)

// AuditLog records audit facts. *audit.Recorder implements it.
type AuditLog interface {
	// Record appends a fact and returns once it is stored; a read is
	// answered only after its record is.
	Record(ctx context.Context, principal string, ev schemas.Event) error
	// Refused records a refused request in the background, rate-limited
	// per client address.
	Refused(addr, principal string, ev schemas.Event)
}

var _ AuditLog = (*audit.Recorder)(nil)

// AuditTrail replays the log into the audit trail. *audit.Trail
// implements it.
type AuditTrail interface {
	Read(ctx context.Context, f audit.Filter) (audit.Result, error)
}

var _ AuditTrail = (*audit.Trail)(nil)

// ReadModelVerifier rebuilds every read model from the log and compares
// it with the live one (projections.Verify), listing at most sample
// differences per read model.
type ReadModelVerifier interface {
	Verify(ctx context.Context, sample int) ([]projections.VerifyResult, error)
}

// verifySample bounds the differences a verification lists per read model.
const (
	defaultVerifySample = 20
	maxVerifySample     = 1000
)

func (s *Server) auditRoutes() {
	if s.deps.Trail != nil {
		s.route("GET /api/audit", auth.Admin, s.auditTrail)
	}
	if s.deps.Verifier != nil {
		s.route("POST /api/audit/verify", auth.Admin, s.verifyReadModels)
	}
}

// auditTrail is GET /api/audit?principal=&secret=&env=&workflow=&from=&to=&limit=:
// the trail replayed from the log, oldest entry first.
func (s *Server) auditTrail(w http.ResponseWriter, r *http.Request) {
	f, err := audit.ParseFilter(r.URL.Query(), time.Now())
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	res, err := s.deps.Trail.Read(r.Context(), f)
	s.reply(w, r, res, err)
}

// verifyResponse is POST /api/audit/verify's answer.
type verifyResponse struct {
	// Drift is true when any read model differs from its rebuild or could
	// not be verified.
	Drift      bool                       `json:"drift"`
	ReadModels []projections.VerifyResult `json:"readModels"`
}

// verifyReadModels is POST /api/audit/verify[?sample=N].
func (s *Server) verifyReadModels(w http.ResponseWriter, r *http.Request) {
	sample := defaultVerifySample
	for k := range r.URL.Query() {
		if k != "sample" {
			s.writeError(w, r, fault.Invalid("unknown parameter %q: use sample", k))
			return
		}
	}
	if v := r.URL.Query().Get("sample"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxVerifySample {
			s.writeError(w, r, fault.Invalid("sample %q: want a number from 1 to %d", v, maxVerifySample))
			return
		}
		sample = n
	}
	if !s.verifying.TryLock() {
		s.writeError(w, r, fmt.Errorf("a verification is already running: %w", fault.ErrConflict))
		return
	}
	defer s.verifying.Unlock()
	results, err := s.deps.Verifier.Verify(r.Context(), sample)
	resp := verifyResponse{ReadModels: results}
	for _, res := range results {
		resp.Drift = resp.Drift || res.Drifted()
	}
	s.reply(w, r, resp, err)
}

// recordRead appends the audit record of a value read; the value is sent
// only when it returns nil. Without an AuditLog nothing is recorded.
func (s *Server) recordRead(r *http.Request, ev schemas.Event) error {
	if s.deps.Audit == nil {
		return nil
	}
	return s.deps.Audit.Record(r.Context(), principal(r), ev)
}

// codeRateLimited is the code of a failed authentication that was not
// even tried: the client was over the token endpoint's rate limits.
const codeRateLimited = "RATE_LIMITED"

// recordAuthFailed records a 401 of authenticate, or a 429 of the token
// endpoint (brute force shows in the trail as failed authentications).
func (s *Server) recordAuthFailed(r *http.Request, err error) {
	status := statusOf(err)
	if s.deps.Audit == nil || status != http.StatusUnauthorized && status != http.StatusTooManyRequests {
		return
	}
	ev := &schemas.AuthFailed{Code: auth.CodeInvalidToken, Reason: audit.Bounded(err.Error()), Method: r.Method,
		Path: audit.Bounded(r.URL.Path), Addr: clientAddr(r), Time: time.Now().UnixMilli()}
	var te *auth.TokenError
	switch {
	case errors.As(err, &te):
		ev.Code = te.Code
	case status == http.StatusTooManyRequests:
		ev.Code = codeRateLimited
	}
	s.deps.Audit.Refused(ev.Addr, "", ev)
}

// recordDenied records a 403, naming the target when the decision was
// about one, and the workflow and task when it was about an execution.
func (s *Server) recordDenied(r *http.Request, err error) {
	if s.deps.Audit == nil {
		return
	}
	ev := &schemas.AccessDenied{Reason: audit.Bounded(strings.TrimSuffix(err.Error(), ": "+fault.ErrForbidden.Error())), Method: r.Method, Path: audit.Bounded(r.URL.Path),
		Addr: clientAddr(r), Time: time.Now().UnixMilli(), By: principal(r)}
	var fe *auth.ForbiddenError
	if errors.As(err, &fe) {
		ev.Access, ev.TargetType, ev.TargetID, ev.Reason = string(fe.Access), fe.Target.Type, audit.Bounded(fe.Target.ID), audit.Bounded(fe.Reason)
	}
	var er *executionRefusal
	if errors.As(err, &er) {
		ev.Workflow, ev.Task = audit.Bounded(er.workflow), audit.Bounded(er.task)
	}
	s.deps.Audit.Refused(ev.Addr, ev.By, ev)
}
