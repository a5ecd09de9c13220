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
)

const subjectPrefix = "fv.meta.schedule."

// Projection keeps schedules and their executions. It reads the metadata
// stream and ignores every subject that is not a schedule's.
type Projection struct{}

// Name implements projections.Projection.
func (Projection) Name() string { return ProjectionName }

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
		if r := s.Def.StartWorkflowRequest; r != nil {
			x.WorkflowName = r.Name
		}
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

func dueKey(at int64, token string) []byte {
	return append(binary.BigEndian.AppendUint64([]byte(keyDue), uint64(at)), token...)
}

func executionKey(token string, at int64) []byte {
	return binary.BigEndian.AppendUint64([]byte(keyExecution+token+"/"), uint64(at))
}
