package audit

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/flowvault/flowvault/auth"
	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/secrets"
)

// Filter selects the entries of a trail. Its fields are ANDed; zero
// fields select everything.
type Filter struct {
	// Principal selects entries whose actor is this principal.
	Principal string
	// Secret selects the entries about one secret: writes, deletes, tag
	// changes, reads through the API, grants on it, denied accesses to it,
	// and resolutions at hand-off.
	Secret string
	// Env is Secret for an environment value.
	Env string
	// Workflow selects the resolutions of one workflow, who joined those
	// it runs as, the accesses to it or its tasks refused through the
	// API, and the secrets its UPDATE_SECRET tasks wrote or were refused.
	Workflow string
	// From and To bound the entries' times: From <= time < To.
	From, To time.Time
	// Limit keeps the most recent entries (0: DefaultLimit).
	Limit int
}

// Limits of a trail's length.
const (
	DefaultLimit = 1000
	MaxLimit     = 100000
)

// Result is a trail: entries oldest first.
type Result struct {
	Entries []Entry `json:"entries"`
	// Truncated reports that older entries matched but are left out
	// (Filter.Limit).
	Truncated bool `json:"truncated"`
	// Records counts the log records read to build the trail.
	Records int `json:"records"`
}

// Scanner is the part of the event log a Trail reads.
type Scanner interface {
	Scan(ctx context.Context, o eventlog.ScanOptions, fn func(eventlog.Record) error) error
}

var _ Scanner = (*eventlog.Log)(nil)

// Trail replays the log into the audit trail. It holds no state: every
// Read reads the log afresh, so the trail is exactly what the log says.
type Trail struct {
	log Scanner
}

// NewTrail returns a Trail reading log.
func NewTrail(log Scanner) *Trail { return &Trail{log: log} }

// clockSkew widens the scan around From and To: records are found by
// the server's storage time, entries are timed by their writer.
const clockSkew = time.Minute

// Read replays the subjects f needs and returns the matching entries in
// time order (ties in log order).
func (t *Trail) Read(ctx context.Context, f Filter) (Result, error) {
	if err := f.check(); err != nil {
		return Result{}, err
	}
	var res Result
	var all []Entry
	var since time.Time
	if !f.From.IsZero() {
		since = f.From.Add(-clockSkew)
	}
	for _, subject := range f.subjects() {
		err := t.log.Scan(ctx, eventlog.ScanOptions{Subject: subject, Since: since}, func(rec eventlog.Record) error {
			if !f.To.IsZero() && rec.Time.After(f.To.Add(clockSkew)) {
				return errStop
			}
			res.Records++
			for _, e := range recordEntries(rec) {
				if f.match(e) {
					all = append(all, e)
				}
			}
			return nil
		})
		if err != nil && err != errStop {
			return Result{}, fmt.Errorf("audit trail: %w", err)
		}
	}
	slices.SortStableFunc(all, func(a, b Entry) int {
		return cmp.Or(a.Time.Compare(b.Time), cmp.Compare(a.Stream, b.Stream), cmp.Compare(a.Seq, b.Seq))
	})
	if limit := f.limit(); len(all) > limit {
		all, res.Truncated = all[len(all)-limit:], true
	}
	if err := t.addFingerprints(ctx, all); err != nil {
		return Result{}, err
	}
	res.Entries = all
	if res.Entries == nil {
		res.Entries = []Entry{}
	}
	return res, nil
}

// errStop ends a subject's scan at To.
var errStop = fmt.Errorf("stop")

func (f Filter) limit() int {
	if f.Limit <= 0 {
		return DefaultLimit
	}
	return min(f.Limit, MaxLimit)
}

func (f Filter) check() error {
	switch {
	case f.Secret != "" && f.Env != "":
		return invalid("secret and env select different targets: give one")
	case f.Limit < 0 || f.Limit > MaxLimit:
		return invalid("limit %d: want 1 to %d", f.Limit, MaxLimit)
	case !f.From.IsZero() && !f.To.IsZero() && !f.From.Before(f.To):
		return invalid("from (%s) must be before to (%s)", f.From.Format(time.RFC3339Nano), f.To.Format(time.RFC3339Nano))
	}
	if f.Secret != "" {
		if err := secrets.CheckSecretName(f.Secret); err != nil {
			return err
		}
	}
	if f.Env != "" {
		return secrets.CheckEnvName(f.Env)
	}
	return nil
}

// subjects are the subject filters a trail for f reads: the aggregates
// the filter names, or every stream with audit-relevant events. A secret
// or environment value is resolved inside workflows, so its trail reads
// the workflow stream too (only From narrows that).
func (f Filter) subjects() []string {
	const workflows = "fv.wf.>"
	switch {
	case f.Workflow != "":
		// Its tasks' writes and refusals are on the secrets' subjects, and
		// the accesses to it refused on its definition's (what the grant
		// would be on), which the entries' workflow detail picks out
		// (match).
		return []string{"fv.wf." + eventlog.Token(f.Workflow), "fv.secret.>",
			deniedPrefix + eventlog.Token(auth.TargetSecret) + ".>", deniedPrefix + eventlog.Token(auth.TargetWorkflowDef) + ".>"}
	case f.Secret != "":
		return []string{secrets.SecretSubject(f.Secret), SecretSubject(f.Secret), DeniedSubject(auth.TargetSecret, f.Secret),
			auth.GrantSubject(auth.Target{Type: auth.TargetSecret, ID: f.Secret}), workflows}
	case f.Env != "":
		return []string{secrets.EnvSubject(f.Env), EnvSubject(f.Env), EnvSubject("*"), DeniedSubject(auth.TargetEnvVariable, f.Env),
			auth.GrantSubject(auth.Target{Type: auth.TargetEnvVariable, ID: f.Env}), workflows}
	}
	return []string{"fv.auth.>", "fv.secret.>", allSubjects, "fv.meta.>", workflows}
}

func (f Filter) match(e Entry) bool {
	switch {
	case f.Principal != "" && e.Principal != f.Principal:
		return false
	case f.Secret != "" && e.Target != target(auth.TargetSecret, f.Secret):
		return false
	case f.Env != "" && e.Target != target(auth.TargetEnvVariable, f.Env):
		return false
	case f.Workflow != "" && !f.ofWorkflow(e):
		return false
	case !f.From.IsZero() && e.Time.Before(f.From):
		return false
	case !f.To.IsZero() && !e.Time.Before(f.To):
		return false
	}
	return true
}

// ofWorkflow reports whether e is about Filter.Workflow: read from its
// own subject (a resolution names it, a principal joining it is its
// target), a secret one of its tasks wrote or was refused or an access to
// it refused (named in the detail), or a record of its subject the trail
// could not read, which must not be hidden.
func (f Filter) ofWorkflow(e Entry) bool {
	return e.Detail["workflow"] == f.Workflow || e.Target == target(auth.TargetWorkflow, f.Workflow) ||
		e.Action == ActUnreadable && e.Detail["subject"] == "fv.wf."+eventlog.Token(f.Workflow)
}

// wfTypes are the workflow events the trail shows (resolutions, and who a
// workflow runs as); the others are not decoded (a workflow's start holds
// its whole definition).
var wfTypes = map[string]bool{(&schemas.TaskStarted{}).EventType(): true, (&schemas.WorkflowStarted{}).EventType(): true,
	(&schemas.WorkflowRunAs{}).EventType(): true}

// recordEntries are the entries of one record. Events the registry cannot
// decode are shown as such rather than dropped: the trail must not hide
// that the log holds something it cannot read.
func recordEntries(rec eventlog.Record) []Entry {
	if rec.Err != nil {
		return []Entry{unreadable(rec, schemas.Envelope{}, rec.Err)}
	}
	var out []Entry
	for _, env := range rec.Events {
		if rec.Stream == eventlog.Workflows.Name && !wfTypes[env.Type] {
			continue
		}
		ev, err := schemas.Default.Decode(env)
		if err != nil {
			out = append(out, unreadable(rec, env, err))
			continue
		}
		out = append(out, fact{rec: rec, env: env, ev: ev}.entries()...)
	}
	return out
}

// ActUnreadable is the action of an event the trail could not decode.
const ActUnreadable = "log.unreadable"

func unreadable(rec eventlog.Record, env schemas.Envelope, err error) Entry {
	return fact{rec: rec, env: env}.entry(ActUnreadable, "", "", map[string]string{
		"subject": rec.Subject, "type": env.Type, "version": strconv.Itoa(int(env.Version)), "error": err.Error()})
}

// addFingerprints completes resolution entries with the fingerprint of
// the version resolved, read from the secret's own subject: a resolution
// names the version, the secret's events its fingerprint.
func (t *Trail) addFingerprints(ctx context.Context, entries []Entry) error {
	known := map[string]map[string]string{} // secret → version → fingerprint
	for i := range entries {
		e := &entries[i]
		if e.Action != ActSecretResolve {
			continue
		}
		name := e.Target[len(auth.TargetSecret)+1:]
		versions, ok := known[name]
		if !ok {
			versions = map[string]string{}
			err := t.log.Scan(ctx, eventlog.ScanOptions{Subject: secrets.SecretSubject(name)}, func(rec eventlog.Record) error {
				for _, env := range rec.Events {
					if env.Type != schemas.TypeSecretVersionPut {
						continue
					}
					if ev, err := schemas.Default.Decode(env); err == nil {
						p := ev.(*schemas.SecretVersionPut)
						versions[strconv.Itoa(p.Version)] = p.Fingerprint
					}
				}
				return nil
			})
			if err != nil {
				return fmt.Errorf("audit trail: fingerprints of %s: %w", name, err)
			}
			known[name] = versions
		}
		if fp := versions[e.Detail["version"]]; fp != "" {
			e.Detail["fingerprint"] = fp
		}
	}
	return nil
}
