package natsauth

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/internal/logkey"
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/workers"
)

// Lifetimes of worker credentials. Every one expires, even if revoked
// before: a revocation list only has to hold unexpired credentials.
const (
	DefaultWorkerTTL = 30 * 24 * time.Hour
	MaxWorkerTTL     = 365 * 24 * time.Hour
)

// Limits of a WorkerSpec.
const (
	maxTaskTypes = 100
	maxNameLen   = 256
)

// AuditSubject holds the audit facts of issued worker credentials.
const AuditSubject = "fv.audit.auth.nats"

// WorkerSpec describes the credentials of a worker.
type WorkerSpec struct {
	// TaskTypes the worker serves.
	TaskTypes []string
	// StartWorkflows the holder may start by publishing, as Principal
	// (workers.StartSubject). A spec names task types, workflows or both.
	StartWorkflows []string
	// Principal is whom the workflows it starts run as: the principal the
	// credentials were issued to.
	Principal string
	// Domains whose queues of those types it may pull from, besides the
	// queues without domain.
	Domains []string
	// DomainsOnly leaves the queues without domain out: the credentials
	// reach the Domains' queues alone (those of a principal whose right is
	// a DOMAIN grant).
	DomainsOnly bool
	// Subscribe are the subjects, or patterns, of the events (EVENT
	// tasks' sinks) the holder may receive (workers.CheckEventSubject).
	Subscribe []string
	// Name is shown in server monitoring (the JWT's name).
	Name string
	// Expires is when the credentials stop working (zero: never; Issuer
	// always sets one).
	Expires time.Time
}

// Validate reports every problem with s.
func (s WorkerSpec) Validate() error {
	var ve fault.ValidationError
	if len(s.TaskTypes) == 0 && len(s.StartWorkflows) == 0 && len(s.Subscribe) == 0 {
		ve.Add("taskTypes", "at least one task type, workflow to start (startWorkflows) or event subject (subscribe) is required")
	}
	if len(s.Subscribe) > maxTaskTypes {
		ve.Add("subscribe", "at most %d subjects", maxTaskTypes)
	}
	for i, subj := range s.Subscribe {
		if err := workers.CheckEventSubject(subj, true); err != nil {
			ve.Add(fmt.Sprintf("subscribe[%d]", i), "%v", err)
		}
	}
	if len(s.StartWorkflows) > maxTaskTypes {
		ve.Add("startWorkflows", "at most %d workflows", maxTaskTypes)
	}
	for i, w := range s.StartWorkflows {
		if w == "" || len(w) > maxNameLen {
			ve.Add(fmt.Sprintf("startWorkflows[%d]", i), "a workflow name has 1 to %d characters", maxNameLen)
		}
	}
	if len(s.StartWorkflows) > 0 && s.Principal == "" {
		ve.Add("principal", "credentials that start workflows need the principal they start them as")
	}
	if len(s.TaskTypes) > maxTaskTypes {
		ve.Add("taskTypes", "at most %d task types", maxTaskTypes)
	}
	for i, t := range s.TaskTypes {
		if t == "" || len(t) > maxNameLen {
			ve.Add(fmt.Sprintf("taskTypes[%d]", i), "a task type has 1 to %d characters", maxNameLen)
		}
	}
	if len(s.Domains) > maxTaskTypes {
		ve.Add("domains", "at most %d domains", maxTaskTypes)
	}
	for i, d := range s.Domains {
		if d == "" || len(d) > maxNameLen {
			ve.Add(fmt.Sprintf("domains[%d]", i), "a domain has 1 to %d characters", maxNameLen)
		}
	}
	if s.DomainsOnly && (len(s.Domains) == 0 || len(s.TaskTypes) == 0) {
		ve.Add("domainsOnly", "credentials for domains only need task types and domains")
	}
	if len(s.Name) > maxNameLen {
		ve.Add("name", "at most %d characters", maxNameLen)
	}
	return ve.Err()
}

// Queues are the domains whose queues of s.TaskTypes the credentials
// reach, "" naming the queue without domain.
func (s WorkerSpec) Queues() []string { return queues(s.Domains, s.DomainsOnly) }

func queues(domains []string, domainsOnly bool) []string {
	if domainsOnly {
		return domains
	}
	return append([]string{""}, domains...)
}

// appender writes audit records; *eventlog.Log implements it.
type appender interface {
	Append(ctx context.Context, subject string, events []schemas.Envelope, expected uint64, opts ...eventlog.AppendOption) (uint64, error)
}

// Issuer issues worker credentials on behalf of principals and revokes
// them, recording each on the audit stream (the user's public key, never
// its seed). It fails closed: no audit record, no credentials.
type Issuer struct {
	authority *Authority
	log       appender
	cfg       IssuerConfig
	now       func() time.Time
}

// IssuerConfig is what an Issuer waits for and logs to.
type IssuerConfig struct {
	// ReadModel, when set, is the runner of the Projection: issuing and
	// revoking return once it has applied their record, so that the
	// caller's next read sees them.
	ReadModel interface {
		WaitFor(ctx context.Context, seq uint64) error
	}
	// Gate, when set, is this server's: a revocation returns once the
	// server refuses the user.
	Gate   *Gate
	Logger *slog.Logger
}

// NewIssuer returns an Issuer signing with a and recording through log.
func NewIssuer(a *Authority, log appender, cfg IssuerConfig) *Issuer {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	cfg.Logger = cfg.Logger.With(logkey.Component, "natsauth")
	return &Issuer{authority: a, log: log, cfg: cfg, now: time.Now}
}

// IssueWorker issues credentials for spec, on behalf of principal by,
// valid for ttl (0: DefaultWorkerTTL; more than MaxWorkerTTL is invalid).
func (i *Issuer) IssueWorker(ctx context.Context, by string, spec WorkerSpec, ttl time.Duration) (*Credentials, error) {
	switch {
	case ttl < 0 || ttl > MaxWorkerTTL:
		return nil, fault.Invalid("expiry %s: want more than 0 and at most %s", ttl, MaxWorkerTTL)
	case ttl == 0:
		ttl = DefaultWorkerTTL
	}
	spec.TaskTypes = dedupe(spec.TaskTypes)
	spec.Domains = dedupe(spec.Domains)
	spec.StartWorkflows = dedupe(spec.StartWorkflows)
	spec.Subscribe = dedupe(spec.Subscribe)
	now := i.now()
	spec.Expires = now.Add(ttl).Truncate(time.Second)
	c, err := i.authority.IssueWorker(spec)
	if err != nil {
		return nil, err
	}
	ev := &schemas.WorkerCredentialsIssued{User: c.User, Name: spec.Name, TaskTypes: spec.TaskTypes, Domains: spec.Domains, DomainsOnly: spec.DomainsOnly,
		StartWorkflows: spec.StartWorkflows, Subscribe: spec.Subscribe, Expires: spec.Expires.Unix(), By: by, Time: now.UnixMilli()}
	if err := i.record(ctx, ev, now); err != nil {
		return nil, err
	}
	i.cfg.Logger.Info("worker credentials issued", logkey.User, c.User, logkey.Principal, by,
		logkey.TaskType, spec.TaskTypes, logkey.Expires, spec.Expires)
	return c, nil
}

// RevokeWorker records that principal by revoked the credentials of
// user, and returns once this server refuses them (with a Gate) and
// closed the connections that used them. Servers of other engines follow
// the record as their read models do. The caller decides who may revoke
// what; revoking twice records twice, and the first stands.
func (i *Issuer) RevokeWorker(ctx context.Context, by, user string) error {
	if err := i.record(ctx, &schemas.WorkerCredentialsRevoked{User: user, By: by, Time: i.now().UnixMilli()}, i.now()); err != nil {
		return err
	}
	i.cfg.Logger.Info("worker credentials revoked", logkey.User, user, logkey.Principal, by)
	if i.cfg.Gate == nil {
		return nil
	}
	// Others' credentials left unchecked (ErrUnchecked) do not hold this
	// revocation back; the gate's Run logs them and tries them again.
	if err := i.cfg.Gate.Sync(); err != nil && !errors.Is(err, ErrUnchecked) {
		return fmt.Errorf("revoke worker credentials %s: recorded, but this server still admits them: %w", user, err)
	}
	return nil
}

// record appends ev to the audit subject and waits for the read model.
func (i *Issuer) record(ctx context.Context, ev schemas.Event, now time.Time) error {
	env, err := schemas.Default.Encode(ev)
	if err != nil {
		return err
	}
	env.ID, env.Time = rand.Text(), now.UnixNano()
	seq, err := i.log.Append(ctx, AuditSubject, []schemas.Envelope{env}, eventlog.ExpectAny)
	if err != nil {
		return fmt.Errorf("record %s: %v: %w", ev.EventType(), err, fault.ErrUnavailable)
	}
	if i.cfg.ReadModel != nil {
		if err := i.cfg.ReadModel.WaitFor(ctx, seq); err != nil {
			return fmt.Errorf("record %s: %w", ev.EventType(), err)
		}
	}
	return nil
}

// dedupe returns s sorted without repeats.
func dedupe(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return slices.Compact(s)
}
