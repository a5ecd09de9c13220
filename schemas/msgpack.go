package schemas

import (
	"github.com/vmihailenco/msgpack/v5"

	"github.com/flowvault/flowvault/internal/msgfields"
)

// The events of every decision, and the envelopes that carry them, write
// themselves by hand (see msgfields); TestEncodingMatchesReflection holds
// each to the reflective encoding. They are read the reflective way: a
// hand-written envelope decoder measured no faster, since most of the
// work is reading past each event's data (msgpack.RawMessage).

// EncodeMsgpack implements msgpack.CustomEncoder.
func (p TaskPolicy) EncodeMsgpack(e *msgpack.Encoder) error {
	w := msgfields.New(e)
	w.MapLen(0, p.RetryCount != 0, p.RetryLogic != "", p.RetryDelaySeconds != 0, p.BackoffScaleFactor != 0,
		p.MaxRetryDelaySeconds != 0, p.BackoffJitterMs != 0, p.TimeoutSeconds != 0, p.TotalTimeoutSeconds != 0,
		p.TimeoutPolicy != "", p.ResponseTimeoutSeconds != 0, p.PollTimeoutSeconds != 0,
		p.RateLimitPerFrequency != 0, p.RateLimitFrequencyInSeconds != 0)
	w.Int("rc", p.RetryCount, true)
	w.Str("rl", p.RetryLogic, true)
	w.Int64("rd", p.RetryDelaySeconds, true)
	w.Int64("bs", p.BackoffScaleFactor, true)
	w.Int64("mrd", p.MaxRetryDelaySeconds, true)
	w.Int64("jit", p.BackoffJitterMs, true)
	w.Int64("to", p.TimeoutSeconds, true)
	w.Int64("tto", p.TotalTimeoutSeconds, true)
	w.Str("tp", p.TimeoutPolicy, true)
	w.Int64("rto", p.ResponseTimeoutSeconds, true)
	w.Int64("pto", p.PollTimeoutSeconds, true)
	w.Int("rlp", p.RateLimitPerFrequency, true)
	w.Int("rlf", p.RateLimitFrequencyInSeconds, true)
	return w.Err()
}

// EncodeMsgpack implements msgpack.CustomEncoder.
func (r ResolvedRef) EncodeMsgpack(e *msgpack.Encoder) error {
	w := msgfields.New(e)
	w.MapLen(2, r.Version != 0, r.Principal != "", r.GrantedBy != "", r.Refused != "", len(r.Sealed) > 0)
	w.Str("k", r.Kind, false)
	w.Str("n", r.Name, false)
	w.Int("v", r.Version, true)
	w.Str("p", r.Principal, true)
	w.Str("g", r.GrantedBy, true)
	w.Str("x", r.Refused, true)
	w.Bytes("s", r.Sealed, true)
	return w.Err()
}

// EncodeMsgpack implements msgpack.CustomEncoder.
func (s *WorkflowStarted) EncodeMsgpack(e *msgpack.Encoder) error {
	w := msgfields.New(e)
	w.MapLen(5, len(s.Input) > 0, len(s.Variables) > 0, s.CorrelationID != "", s.Priority != 0, len(s.TaskToDomain) > 0,
		s.CreatedBy != "", s.ParentWorkflowID != "", s.ParentWorkflowTaskID != "", s.Depth != 0, s.IdempotencyKey != "", len(s.Resolved) > 0,
		s.Event != "", s.RateLimited, s.RateLimitKey != "", s.Queued)
	w.Str("id", s.WorkflowID, false)
	w.Str("name", s.Name, false)
	w.Int("ver", s.Version, false)
	w.Bytes("def", s.Def, false)
	w.Value("in", s.Input, len(s.Input) == 0)
	w.Value("vars", s.Variables, len(s.Variables) == 0)
	w.Str("corr", s.CorrelationID, true)
	w.Int("prio", s.Priority, true)
	w.Value("t2d", s.TaskToDomain, len(s.TaskToDomain) == 0)
	w.Str("by", s.CreatedBy, true)
	w.Str("pwf", s.ParentWorkflowID, true)
	w.Str("ptask", s.ParentWorkflowTaskID, true)
	w.Int("depth", s.Depth, true)
	w.Str("idem", s.IdempotencyKey, true)
	w.Int64("ts", s.Time, false)
	w.Value("res", s.Resolved, len(s.Resolved) == 0)
	w.Str("event", s.Event, true)
	w.Bool("rl", s.RateLimited)
	w.Str("rlk", s.RateLimitKey, true)
	w.Bool("queued", s.Queued)
	return w.Err()
}

// EncodeMsgpack implements msgpack.CustomEncoder.
func (s *TaskScheduled) EncodeMsgpack(e *msgpack.Encoder) error {
	w := msgfields.New(e)
	w.MapLen(8, len(s.Input) > 0, len(s.Deferred) > 0, len(s.SealedReads) > 0, s.RetryCount != 0, s.RetriedTaskID != "", s.Iteration != 0,
		s.Domain != "", s.AvailableAt != 0, len(s.Config) > 0, len(s.TaskDef) > 0, s.SubWorkflowID != "",
		s.ParentTaskID != "", len(s.Output) > 0, s.Case != "", s.CaseDefault, len(s.Forked) > 0, s.Reason != "", s.FirstScheduled != 0)
	w.Str("id", s.TaskID, false)
	w.Str("ref", s.Ref, false)
	w.Str("name", s.Name, false)
	w.Str("type", s.Type, false)
	w.Str("st", s.Status, false)
	w.Int("seq", s.Seq, false)
	w.Value("in", s.Input, len(s.Input) == 0)
	w.Value("dfr", s.Deferred, len(s.Deferred) == 0)
	w.Value("srd", s.SealedReads, len(s.SealedReads) == 0)
	w.Int("retry", s.RetryCount, true)
	w.Str("retried", s.RetriedTaskID, true)
	w.Int("iter", s.Iteration, true)
	w.Str("dom", s.Domain, true)
	w.Int64("avail", s.AvailableAt, true)
	w.Field("pol", s.Policy.EncodeMsgpack)
	w.Bytes("cfg", s.Config, true)
	w.Bytes("tdef", s.TaskDef, true)
	w.Str("sub", s.SubWorkflowID, true)
	w.Str("parent", s.ParentTaskID, true)
	w.Value("out", s.Output, len(s.Output) == 0)
	w.Str("case", s.Case, true)
	w.Bool("cdef", s.CaseDefault)
	w.Value("fork", s.Forked, len(s.Forked) == 0)
	w.Str("why", s.Reason, true)
	w.Int64("first", s.FirstScheduled, true)
	w.Int64("ts", s.Time, false)
	return w.Err()
}

// EncodeMsgpack implements msgpack.CustomEncoder.
func (s *TaskStarted) EncodeMsgpack(e *msgpack.Encoder) error {
	w := msgfields.New(e)
	w.MapLen(2, s.WorkerID != "", len(s.Resolved) > 0)
	w.Str("id", s.TaskID, false)
	w.Str("worker", s.WorkerID, true)
	w.Int64("ts", s.Time, false)
	w.Value("res", s.Resolved, len(s.Resolved) == 0)
	return w.Err()
}

// EncodeMsgpack implements msgpack.CustomEncoder.
func (u *TaskUpdated) EncodeMsgpack(e *msgpack.Encoder) error {
	w := msgfields.New(e)
	w.MapLen(3, len(u.Output) > 0, u.KeepOutput, u.MergeOutput, len(u.DropOutput) > 0, u.Reason != "", u.WorkerID != "",
		u.CallbackAfterSeconds != 0, u.AvailableAt != 0, u.LeaseExtended, u.Released, u.LeaseExpired, u.SubWorkflowID != "",
		u.Case != "", u.CaseDefault, u.ClearsFailed)
	w.Str("id", u.TaskID, false)
	w.Str("st", u.Status, false)
	w.Value("out", u.Output, len(u.Output) == 0)
	w.Bool("keep", u.KeepOutput)
	w.Bool("merge", u.MergeOutput)
	w.Value("drop", u.DropOutput, len(u.DropOutput) == 0)
	w.Str("why", u.Reason, true)
	w.Str("worker", u.WorkerID, true)
	w.Int64("cb", u.CallbackAfterSeconds, true)
	w.Int64("avail", u.AvailableAt, true)
	w.Bool("lease", u.LeaseExtended)
	w.Bool("rel", u.Released)
	w.Bool("expired", u.LeaseExpired)
	w.Str("sub", u.SubWorkflowID, true)
	w.Str("case", u.Case, true)
	w.Bool("cdef", u.CaseDefault)
	w.Bool("clrf", u.ClearsFailed)
	w.Int64("ts", u.Time, false)
	return w.Err()
}

// EncodeMsgpack implements msgpack.CustomEncoder.
func (s *WorkflowStatusChanged) EncodeMsgpack(e *msgpack.Encoder) error {
	w := msgfields.New(e)
	w.MapLen(2, s.Reason != "", len(s.Output) > 0, len(s.FailedTaskRefs) > 0, len(s.FailedTaskNames) > 0, s.FailedTaskID != "", s.NoFailedTask, s.NoFailureWorkflow, s.RestartsTimeout)
	w.Str("st", s.Status, false)
	w.Str("why", s.Reason, true)
	w.Value("out", s.Output, len(s.Output) == 0)
	w.Value("frefs", s.FailedTaskRefs, len(s.FailedTaskRefs) == 0)
	w.Value("fnames", s.FailedTaskNames, len(s.FailedTaskNames) == 0)
	w.Str("ftid", s.FailedTaskID, true)
	w.Bool("noftid", s.NoFailedTask)
	w.Bool("nofw", s.NoFailureWorkflow)
	w.Bool("rto", s.RestartsTimeout)
	w.Int64("ts", s.Time, false)
	return w.Err()
}

// EncodeMsgpack implements msgpack.CustomEncoder.
func (env Envelope) EncodeMsgpack(e *msgpack.Encoder) error {
	w := msgfields.New(e)
	w.MapLen(5, env.CausationID != "", env.CorrelationID != "", env.Principal != "")
	w.Str("t", env.Type, false)
	w.Uint16("v", env.Version)
	w.Str("id", env.ID, false)
	w.Int64("ts", env.Time, false)
	w.Str("ca", env.CausationID, true)
	w.Str("co", env.CorrelationID, true)
	w.Str("p", env.Principal, true)
	w.Raw("d", env.Data)
	return w.Err()
}
