package engine

import (
	"github.com/vmihailenco/msgpack/v5"

	"github.com/flowvault/flowvault/internal/msgfields"
	"github.com/flowvault/flowvault/schemas"
)

// The executions read model encodes a workflow's state and its changed
// tasks on every record it folds: these write them by hand (see
// msgfields). TestStateEncodingMatchesReflection holds them to the
// reflective encoding of every state the replay fixtures fold.

// EncodeMsgpack implements msgpack.CustomEncoder.
func (t *Task) EncodeMsgpack(e *msgpack.Encoder) error {
	w := msgfields.New(e)
	w.MapLen(11, len(t.Deferred) > 0, t.RetryCount != 0, t.Retried, t.Held, t.RetriedTaskID != "", t.PollCount != 0, t.LeaseExpiries != 0,
		t.Iteration != 0, t.Domain != "", t.WorkerID != "", t.Reason != "", t.CallbackAfterSeconds != 0,
		t.FirstScheduled != 0, t.AvailableAt != 0, t.StartTime != 0, t.FirstStartTime != 0, t.EndTime != 0,
		len(t.Config) > 0, len(t.TaskDef) > 0, t.SubWorkflowID != "", t.ParentTaskID != "", len(t.Logs) > 0, t.StartDelay != 0,
		len(t.Resolved) > 0, t.Case != "", t.CaseDefault, len(t.Forked) > 0, len(t.SealedReads) > 0, len(t.CacheKeys) > 0, t.KeysKept)
	w.Str("id", t.ID, false)
	w.Str("ref", t.Ref, false)
	w.Str("name", t.Name, false)
	w.Str("type", t.Type, false)
	w.Str("st", t.Status, false)
	w.Int("seq", t.Seq, false)
	w.Value("in", t.Input, false)
	w.Value("dfr", t.Deferred, len(t.Deferred) == 0)
	w.Value("out", t.Output, false)
	w.Int("retry", t.RetryCount, true)
	w.Bool("retried", t.Retried)
	w.Bool("held", t.Held)
	w.Str("rtid", t.RetriedTaskID, true)
	w.Int("polls", t.PollCount, true)
	w.Int("expiries", t.LeaseExpiries, true)
	w.Int("iter", t.Iteration, true)
	w.Str("dom", t.Domain, true)
	w.Str("worker", t.WorkerID, true)
	w.Str("why", t.Reason, true)
	w.Int64("cb", t.CallbackAfterSeconds, true)
	w.Int64("sched", t.ScheduledTime, false)
	w.Int64("first", t.FirstScheduled, true)
	w.Int64("avail", t.AvailableAt, true)
	w.Int64("start", t.StartTime, true)
	w.Int64("fstart", t.FirstStartTime, true)
	w.Int64("end", t.EndTime, true)
	w.Int64("upd", t.UpdateTime, false)
	w.Value("pol", &t.Policy, false)
	w.Bytes("cfg", t.Config, true)
	w.Bytes("tdef", t.TaskDef, true)
	w.Str("sub", t.SubWorkflowID, true)
	w.Str("parent", t.ParentTaskID, true)
	w.Value("logs", t.Logs, len(t.Logs) == 0)
	w.Int64("delay", t.StartDelay, true)
	w.Value("res", t.Resolved, len(t.Resolved) == 0)
	w.Str("case", t.Case, true)
	w.Bool("cdef", t.CaseDefault)
	w.Value("fork", t.Forked, len(t.Forked) == 0)
	w.Value("srd", t.SealedReads, len(t.SealedReads) == 0)
	w.Value("ckeys", t.CacheKeys, len(t.CacheKeys) == 0)
	w.Bool("kkept", t.KeysKept)
	return w.Err()
}

// EncodeMsgpack implements msgpack.CustomEncoder.
func (w *Workflow) EncodeMsgpack(e *msgpack.Encoder) error { return w.encode(e, true) }

// AppendStateHead appends to dst what schemas.MarshalSorted returns for w
// without its definition, input and tasks. The executions read model
// writes those apart, each when it changes: most records change one task
// of a workflow and neither its definition nor its input, and a state
// written whole on every record made a workflow of n tasks (or one started
// with a list of n items) write O(n²) bytes.
func AppendStateHead(dst []byte, w *Workflow) ([]byte, error) {
	return schemas.AppendSorted(dst, stateHead{w})
}

// stateHead encodes a state without its definition, input and tasks.
type stateHead struct{ w *Workflow }

func (s stateHead) EncodeMsgpack(e *msgpack.Encoder) error { return s.w.encode(e, false) }

// encode writes w whole, or without its definition, input and tasks (all
// nil).
func (w *Workflow) encode(e *msgpack.Encoder, whole bool) error {
	def, input, tasks := w.DefJSON, w.Input, w.Tasks
	if !whole {
		def, input, tasks = nil, nil, nil
	}
	f := msgfields.New(e)
	f.MapLen(14, w.CorrelationID != "", w.Priority != 0, len(w.TaskToDomain) > 0, w.CreatedBy != "", len(w.AlsoRunsAs) > 0,
		w.ParentWorkflowID != "", w.ParentWorkflowTaskID != "", w.Depth != 0, w.IdempotencyKey != "", w.Reason != "",
		len(w.FailedTaskRefs) > 0, len(w.FailedTaskNames) > 0, w.FailedTaskID != "", w.EndTime != 0, w.LastRetriedTime != 0,
		w.ResetTime != 0, w.ResumeTime != 0, w.NoFailureWorkflow, len(w.FailureWorkflows) > 0, w.Epoch != 0, w.RerunUpTo != "", w.Removed, w.Archived, w.SealsSecrets, w.Compacted, w.ShreddedNothing, w.SecretsKey != "", len(w.MaskedPaths) > 0, w.Unsealed, len(w.Resolved) > 0,
		w.Event != "", w.RateLimited, w.RateLimitKey != "", w.Queued)
	f.Str("id", w.ID, false)
	f.Str("name", w.Name, false)
	f.Int("ver", w.Version, false)
	f.Bytes("def", def, false)
	f.Str("st", w.Status, false)
	f.Value("in", input, false)
	f.Value("out", w.Output, false)
	f.Value("vars", w.Variables, false)
	f.Str("corr", w.CorrelationID, true)
	f.Int("prio", w.Priority, true)
	f.Value("t2d", w.TaskToDomain, len(w.TaskToDomain) == 0)
	f.Str("by", w.CreatedBy, true)
	f.Value("alsoAs", w.AlsoRunsAs, len(w.AlsoRunsAs) == 0)
	f.Str("pwf", w.ParentWorkflowID, true)
	f.Str("ptask", w.ParentWorkflowTaskID, true)
	f.Int("depth", w.Depth, true)
	f.Str("idem", w.IdempotencyKey, true)
	f.Str("why", w.Reason, true)
	f.Value("frefs", w.FailedTaskRefs, len(w.FailedTaskRefs) == 0)
	f.Value("fnames", w.FailedTaskNames, len(w.FailedTaskNames) == 0)
	f.Str("ftid", w.FailedTaskID, true)
	f.Int64("ct", w.CreateTime, false)
	f.Int64("stt", w.StartTime, false)
	f.Int64("et", w.EndTime, true)
	f.Int64("ut", w.UpdateTime, false)
	f.Int64("lrt", w.LastRetriedTime, true)
	f.Bool("nofw", w.NoFailureWorkflow)
	f.Value("fws", w.FailureWorkflows, len(w.FailureWorkflows) == 0)
	f.Int64("rst", w.ResetTime, true)
	f.Int64("rsm", w.ResumeTime, true)
	f.Field("tasks", func(e *msgpack.Encoder) error { return encodeTasks(e, tasks) })
	f.Int("ctr", w.Counter, false)
	f.Int("epoch", w.Epoch, true)
	f.Str("upTo", w.RerunUpTo, true)
	f.Bool("rm", w.Removed)
	f.Bool("arch", w.Archived)
	f.Bool("sealsSecrets", w.SealsSecrets)
	f.Bool("compacted", w.Compacted)
	f.Bool("shreddedNothing", w.ShreddedNothing)
	f.Str("secretsKey", w.SecretsKey, true)
	f.Value("masked", w.MaskedPaths, len(w.MaskedPaths) == 0)
	f.Bool("unsealed", w.Unsealed)
	f.Value("res", w.Resolved, len(w.Resolved) == 0)
	f.Str("event", w.Event, true)
	f.Bool("rl", w.RateLimited)
	f.Str("rlk", w.RateLimitKey, true)
	f.Bool("queued", w.Queued)
	f.Uint64("seq", w.Seq, false)
	return f.Err()
}

func encodeTasks(e *msgpack.Encoder, ts []*Task) error {
	if ts == nil {
		return e.EncodeNil()
	}
	if err := e.EncodeArrayLen(len(ts)); err != nil {
		return err
	}
	for _, t := range ts {
		var err error
		if t == nil {
			err = e.EncodeNil()
		} else {
			err = t.EncodeMsgpack(e)
		}
		if err != nil {
			return err
		}
	}
	return nil
}
