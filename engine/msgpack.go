package engine

import (
	"github.com/vmihailenco/msgpack/v5"
)

// The executions read model encodes a workflow's whole state, tasks
// included, on every record it folds; the reflective encoder spends most of
// that time deciding field by field what omitempty leaves out. These
// encoders write the same bytes directly: the map of the fields in
// declaration order, each under its tag, the omitempty ones only when set,
// int64 and uint64 in their fixed-size form (flowvault never asks for
// compact integers). TestStateEncodingMatchesReflection holds them to the
// reflective encoding of every state the replay fixtures fold.

// EncodeMsgpack implements msgpack.CustomEncoder.
func (t *Task) EncodeMsgpack(e *msgpack.Encoder) error {
	w := fieldWriter{e: e}
	w.mapLen(11, len(t.Deferred) > 0, t.RetryCount != 0, t.Retried, t.RetriedTaskID != "", t.PollCount != 0,
		t.Iteration != 0, t.Domain != "", t.WorkerID != "", t.Reason != "", t.CallbackAfterSeconds != 0,
		t.FirstScheduled != 0, t.AvailableAt != 0, t.StartTime != 0, t.FirstStartTime != 0, t.EndTime != 0,
		len(t.Config) > 0, len(t.TaskDef) > 0, t.SubWorkflowID != "", t.ParentTaskID != "", len(t.Logs) > 0,
		len(t.Resolved) > 0)
	w.str("id", t.ID, false)
	w.str("ref", t.Ref, false)
	w.str("name", t.Name, false)
	w.str("type", t.Type, false)
	w.str("st", t.Status, false)
	w.int("seq", t.Seq, false)
	w.value("in", t.Input, false)
	w.value("dfr", t.Deferred, len(t.Deferred) == 0)
	w.value("out", t.Output, false)
	w.int("retry", t.RetryCount, true)
	w.bool("retried", t.Retried)
	w.str("rtid", t.RetriedTaskID, true)
	w.int("polls", t.PollCount, true)
	w.int("iter", t.Iteration, true)
	w.str("dom", t.Domain, true)
	w.str("worker", t.WorkerID, true)
	w.str("why", t.Reason, true)
	w.int64("cb", t.CallbackAfterSeconds, true)
	w.int64("sched", t.ScheduledTime, false)
	w.int64("first", t.FirstScheduled, true)
	w.int64("avail", t.AvailableAt, true)
	w.int64("start", t.StartTime, true)
	w.int64("fstart", t.FirstStartTime, true)
	w.int64("end", t.EndTime, true)
	w.int64("upd", t.UpdateTime, false)
	w.value("pol", &t.Policy, false)
	w.bytes("cfg", t.Config, true)
	w.bytes("tdef", t.TaskDef, true)
	w.str("sub", t.SubWorkflowID, true)
	w.str("parent", t.ParentTaskID, true)
	w.value("logs", t.Logs, len(t.Logs) == 0)
	w.value("res", t.Resolved, len(t.Resolved) == 0)
	return w.err
}

// EncodeMsgpack implements msgpack.CustomEncoder.
func (w *Workflow) EncodeMsgpack(e *msgpack.Encoder) error {
	f := fieldWriter{e: e}
	f.mapLen(14, w.CorrelationID != "", w.Priority != 0, len(w.TaskToDomain) > 0, w.CreatedBy != "",
		w.ParentWorkflowID != "", w.ParentWorkflowTaskID != "", w.IdempotencyKey != "", w.Reason != "",
		len(w.FailedTaskRefs) > 0, len(w.FailedTaskNames) > 0, w.EndTime != 0, w.LastRetriedTime != 0,
		w.Epoch != 0, w.Removed, w.Archived, w.SealsSecrets, w.Compacted, w.SecretsKey != "", len(w.MaskedPaths) > 0)
	f.str("id", w.ID, false)
	f.str("name", w.Name, false)
	f.int("ver", w.Version, false)
	f.bytes("def", w.DefJSON, false)
	f.str("st", w.Status, false)
	f.value("in", w.Input, false)
	f.value("out", w.Output, false)
	f.value("vars", w.Variables, false)
	f.str("corr", w.CorrelationID, true)
	f.int("prio", w.Priority, true)
	f.value("t2d", w.TaskToDomain, len(w.TaskToDomain) == 0)
	f.str("by", w.CreatedBy, true)
	f.str("pwf", w.ParentWorkflowID, true)
	f.str("ptask", w.ParentWorkflowTaskID, true)
	f.str("idem", w.IdempotencyKey, true)
	f.str("why", w.Reason, true)
	f.value("frefs", w.FailedTaskRefs, len(w.FailedTaskRefs) == 0)
	f.value("fnames", w.FailedTaskNames, len(w.FailedTaskNames) == 0)
	f.int64("ct", w.CreateTime, false)
	f.int64("stt", w.StartTime, false)
	f.int64("et", w.EndTime, true)
	f.int64("ut", w.UpdateTime, false)
	f.int64("lrt", w.LastRetriedTime, true)
	f.tasks("tasks", w.Tasks)
	f.int("ctr", w.Counter, false)
	f.int("epoch", w.Epoch, true)
	f.bool("rm", w.Removed)
	f.bool("arch", w.Archived)
	f.bool("sealsSecrets", w.SealsSecrets)
	f.bool("compacted", w.Compacted)
	f.str("secretsKey", w.SecretsKey, true)
	f.value("masked", w.MaskedPaths, len(w.MaskedPaths) == 0)
	f.key("seq")
	if f.err == nil {
		f.err = e.EncodeUint64(w.Seq)
	}
	return f.err
}

// fieldWriter writes a struct's fields, keeping the first error.
type fieldWriter struct {
	e   *msgpack.Encoder
	err error
}

// mapLen writes the map header: always fields, plus one for each set
// optional field.
func (f *fieldWriter) mapLen(always int, optional ...bool) {
	n := always
	for _, set := range optional {
		if set {
			n++
		}
	}
	f.err = f.e.EncodeMapLen(n)
}

func (f *fieldWriter) key(name string) {
	if f.err == nil {
		f.err = f.e.EncodeString(name)
	}
}

func (f *fieldWriter) str(name, v string, omitEmpty bool) {
	if omitEmpty && v == "" {
		return
	}
	if f.key(name); f.err == nil {
		f.err = f.e.EncodeString(v)
	}
}

func (f *fieldWriter) int(name string, v int, omitEmpty bool) {
	if omitEmpty && v == 0 {
		return
	}
	if f.key(name); f.err == nil {
		f.err = f.e.EncodeInt(int64(v))
	}
}

func (f *fieldWriter) int64(name string, v int64, omitEmpty bool) {
	if omitEmpty && v == 0 {
		return
	}
	if f.key(name); f.err == nil {
		f.err = f.e.EncodeInt64(v)
	}
}

// bool writes an omitempty bool.
func (f *fieldWriter) bool(name string, v bool) {
	if !v {
		return
	}
	if f.key(name); f.err == nil {
		f.err = f.e.EncodeBool(v)
	}
}

func (f *fieldWriter) bytes(name string, v []byte, omitEmpty bool) {
	if omitEmpty && len(v) == 0 {
		return
	}
	if f.key(name); f.err == nil {
		f.err = f.e.EncodeBytes(v)
	}
}

// value writes any other field the reflective way, unless omit.
func (f *fieldWriter) value(name string, v any, omit bool) {
	if omit {
		return
	}
	if f.key(name); f.err == nil {
		f.err = f.e.Encode(v)
	}
}

func (f *fieldWriter) tasks(name string, ts []*Task) {
	if f.key(name); f.err != nil {
		return
	}
	if ts == nil {
		f.err = f.e.EncodeNil()
		return
	}
	if f.err = f.e.EncodeArrayLen(len(ts)); f.err != nil {
		return
	}
	for _, t := range ts {
		if t == nil {
			f.err = f.e.EncodeNil()
		} else {
			f.err = t.EncodeMsgpack(f.e)
		}
		if f.err != nil {
			return
		}
	}
}
