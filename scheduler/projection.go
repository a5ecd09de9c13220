package scheduler

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/projections"
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// ProjectionName is the schedules read model's name.
const ProjectionName = "schedules"

// Key layout inside the projection's key space.
const (
	keyState     = "s/" // s/<token> → msgpack State
	keyDue       = "d/" // d/<next fire ms BE><token> → ""
	keyPending   = "p/" // p/<token> → "": fired, outcome not recorded yet
	keyExecution = "x/" // x/<token>/<scheduled ms BE> → JSON ScheduleExecution
	// keyExecutionEnd follows every x/ key ('0' follows '/').
	keyExecutionEnd = "x0"
)

const subjectPrefix = "fv.meta.schedule."

// Projection keeps schedules and their executions. It reads the metadata
// stream and ignores every subject that is not a schedule's.
type Projection struct{}

// Name implements projections.Projection.
func (Projection) Name() string { return ProjectionName }

// Layout implements projections.Layouter: layout 2 lists a paused
// schedule's pending claim.
func (Projection) Layout() int { return 2 }

// Apply implements projections.Projection.
func (Projection) Apply(b *projections.Batch, rec eventlog.Record) error {
	token, ok := strings.CutPrefix(rec.Subject, subjectPrefix)
	if !ok {
		return nil
	}
	events := make([]schemas.Event, 0, len(rec.Events))
	for _, env := range rec.Events {
		ev, err := schemas.Default.Decode(env)
		if err != nil {
			return err
		}
		events = append(events, ev)
	}
	s, err := loadState(b, token)
	if err != nil {
		return err
	}
	var oldNext int64
	if s != nil {
		oldNext = s.NextFire()
	}
	// Fold every event before writing anything: a record with a poison
	// event must leave nothing of itself behind when it is parked.
	probe := s
	if s != nil {
		c := *s
		probe = &c
	}
	for _, ev := range events {
		if probe, err = Apply(probe, ev); err != nil {
			return fmt.Errorf("%w: %v", projections.ErrPoison, err)
		}
	}
	for _, ev := range events {
		if s, err = Apply(s, ev); err != nil {
			return fmt.Errorf("%w: %v", projections.ErrPoison, err)
		}
		if err := recordExecution(b, token, s, ev); err != nil {
			return err
		}
	}
	s.Seq = rec.Seq
	v, err := msgpack.Marshal(s)
	if err != nil {
		return err
	}
	if err := b.Set([]byte(keyState+token), v); err != nil {
		return err
	}
	if next := s.NextFire(); next != oldNext {
		if oldNext != 0 {
			if err := b.Delete(dueKey(oldNext, token)); err != nil {
				return err
			}
		}
		if next != 0 {
			if err := b.Set(dueKey(next, token), nil); err != nil {
				return err
			}
		}
	}
	// A paused schedule's claim stays listed: the firer starts nothing
	// for it, but records its run when an earlier attempt's workflow
	// started (finishStarted).
	if s.Pending() {
		return b.Set([]byte(keyPending+token), nil)
	}
	return b.Delete([]byte(keyPending + token))
}

func recordExecution(b *projections.Batch, token string, s *State, ev schemas.Event) error {
	var x conductor.ScheduleExecution
	var at int64
	switch e := ev.(type) {
	case *schemas.ScheduleFired:
		at = e.ScheduledTime
		x = conductor.ScheduleExecution{ExecutionID: e.WorkflowID, ScheduleName: s.Def.Name, ScheduledTime: at,
			ExecutionTime: e.Time, WorkflowID: e.WorkflowID, State: "POLLED", ZoneID: s.Def.ZoneID, Request: s.Def.StartWorkflowRequest}
		x.WorkflowName = workflowName(s.Def.StartWorkflowRequest)
		if s.Fires > ExecutionsKept {
			if err := deleteOldestExecution(b, token); err != nil {
				return err
			}
		}
	case *schemas.ScheduleDeleted:
		// The records go with the schedule: whoever creates the name next
		// may read its executions, and they are not theirs.
		return deleteExecutions(b, token)
	case *schemas.ScheduleExecuted:
		at = e.ScheduledTime
		v, err := b.Get(executionKey(token, at))
		if err != nil {
			return nil // an outcome without its fire: nothing to update
		}
		if err := json.Unmarshal(v, &x); err != nil {
			return err
		}
		x.State, x.Reason = "EXECUTED", e.Reason
		if e.WorkflowID != "" {
			x.WorkflowID = e.WorkflowID
		}
		if e.Failed {
			x.State, x.WorkflowID = "FAILED", ""
		}
	default:
		return nil
	}
	v, err := json.Marshal(x)
	if err != nil {
		return err
	}
	return b.Set(executionKey(token, at), v)
}

// ExecutionsKept is how many executions of a schedule its read model keeps:
// an every-second schedule fires 86,400 times a day.
const ExecutionsKept = 1000

func deleteOldestExecution(b *projections.Batch, token string) error {
	var oldest []byte
	err := b.Scan([]byte(keyExecution+token+"/"), func(key, _ []byte) bool {
		oldest = slices.Clone(key)
		return false
	})
	if err != nil || oldest == nil {
		return err
	}
	return b.Delete(oldest)
}

// deleteExecutions deletes the schedule's execution records: the keys
// x/<token>/…, up to x/<token>0 ('0' follows '/').
func deleteExecutions(b *projections.Batch, token string) error {
	return b.DeleteRange([]byte(keyExecution+token+"/"), []byte(keyExecution+token+"0"))
}

func loadState(r interface{ Get([]byte) ([]byte, error) }, token string) (*State, error) {
	v, err := r.Get([]byte(keyState + token))
	if errors.Is(err, projections.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var s State
	if err := msgpack.Unmarshal(v, &s); err != nil {
		return nil, fmt.Errorf("stored schedule %s: %w", token, err)
	}
	return &s, nil
}

// The due index can go stale without an event: a schedule's next fire
// time is computed with the zone rules (tzdata) and the cron semantics of
// the binary that computes it, and the key stays where an earlier one put
// it. Apply deletes the key of the next fire time as it computes it now,
// so a key placed under other rules is left behind: one earlier than the
// real time makes the firer look at the schedule, find nothing due and
// look again at every scan until the real time; one later makes the
// schedule fire late, and it stays in the index after the schedule's next
// fire. fixDue corrects a schedule's keys to its next fire time as
// computed now; the firer calls it for each key it finds due and for
// every schedule whose keys differ when it sweeps the index (reconcileDue).
//
// Only due keys are written, never a schedule's state, and Apply reads no
// due key, so a repair racing the projection's runner loses no event: at
// worst it leaves a key that the firer finds due, and removes, later.

// fixDue makes the keys stale (those the caller found for token, possibly
// none) give way to the schedule's next fire time, read and computed in
// the repair's own batch. It reports that time, and whether the index
// changed: a caller's view may be older than the batch's.
func (s *Store) fixDue(token string, stale []int64) (want int64, changed bool, err error) {
	err = s.pstore.Update(ProjectionName, func(b *projections.Batch) error {
		st, err := loadState(b, token)
		if err != nil {
			return err
		}
		if st != nil {
			want = st.NextFire()
		}
		for _, at := range stale {
			if at == want {
				continue
			}
			if found, err := hasKey(b, dueKey(at, token)); err != nil || !found {
				if err != nil {
					return err
				}
				continue
			}
			if err := b.Delete(dueKey(at, token)); err != nil {
				return err
			}
			changed = true
		}
		if want == 0 {
			return nil
		}
		if found, err := hasKey(b, dueKey(want, token)); err != nil || found {
			return err
		}
		changed = true
		return b.Set(dueKey(want, token), nil)
	})
	if err != nil {
		return 0, false, fmt.Errorf("schedule %s due index: %w", untoken(token), err)
	}
	return want, changed, nil
}

func hasKey(r interface{ Get([]byte) ([]byte, error) }, key []byte) (bool, error) {
	_, err := r.Get(key)
	if errors.Is(err, projections.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// checkDue corrects token's key at, found due, when the schedule's next
// fire time is elsewhere. The read model decides the common cases alone:
// the key is the schedule's next fire time, or the projection has moved it
// since the scan (its runner applies the fire that the scan just claimed).
func (s *Store) checkDue(token string, at int64) error {
	st, err := loadState(s.reader, token)
	if err != nil {
		return fmt.Errorf("schedule %s due index: %w", untoken(token), err)
	}
	if st != nil && st.NextFire() == at {
		return nil
	}
	// The state is read first: a state past at commits with the deletion
	// of at's key, so a key still there was left by other rules.
	if found, err := hasKey(s.reader, dueKey(at, token)); err != nil || !found {
		if err != nil {
			return fmt.Errorf("schedule %s due index: %w", untoken(token), err)
		}
		return nil
	}
	want, changed, err := s.fixDue(token, []int64{at})
	if err == nil && changed {
		s.logger.Info("schedule due index corrected", "schedule", untoken(token), "stale", at, "due", want)
	}
	return err
}

// reconcileDue compares the whole due index with the schedules' next fire
// times and corrects every schedule whose keys differ; it returns how many
// it changed. It finds what checkDue cannot: a key later than the real
// fire time, which no scan reaches in time.
func (s *Store) reconcileDue() (int, error) {
	keys := map[string][]int64{}
	err := s.reader.Scan([]byte(keyDue), func(key, _ []byte) bool {
		at, token, err := dueToken(key)
		if err == nil {
			keys[token] = append(keys[token], at)
		}
		return true
	})
	if err != nil {
		return 0, fmt.Errorf("due index: %w", err)
	}
	type fix struct {
		token string
		stale []int64
	}
	var fixes []fix
	var derr error
	err = s.reader.Scan([]byte(keyState), func(key, v []byte) bool {
		var st State
		if derr = msgpack.Unmarshal(v, &st); derr != nil {
			derr = fmt.Errorf("stored schedule %s: %w", key, derr)
			return false
		}
		token := string(key[len(keyState):])
		have := keys[token]
		delete(keys, token)
		want := st.NextFire()
		if (want == 0 && len(have) > 0) || (want != 0 && (len(have) != 1 || have[0] != want)) {
			fixes = append(fixes, fix{token, have})
		}
		return true
	})
	if err == nil {
		err = derr
	}
	if err != nil {
		return 0, fmt.Errorf("due index: %w", err)
	}
	for token, have := range keys {
		fixes = append(fixes, fix{token, have}) // keys of no schedule
	}
	fixed := 0
	for _, x := range fixes {
		want, changed, err := s.fixDue(x.token, x.stale)
		if err != nil {
			return fixed, err
		}
		if changed {
			fixed++
			s.logger.Info("schedule due index corrected", "schedule", untoken(x.token), "stale", x.stale, "due", want)
		}
	}
	return fixed, nil
}

// untoken is the schedule name a token stands for, for log lines (the
// token itself when it is malformed).
func untoken(token string) string {
	if name, err := eventlog.Untoken(token); err == nil {
		return name
	}
	return token
}

func dueKey(at int64, token string) []byte {
	return append(binary.BigEndian.AppendUint64([]byte(keyDue), uint64(at)), token...)
}

func executionKey(token string, at int64) []byte {
	return binary.BigEndian.AppendUint64([]byte(keyExecution+token+"/"), uint64(at))
}
