package engine

import (
	"bytes"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"unsafe"

	"github.com/flowvault/flowvault/masking"
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// Apply folds one event into w and returns the new state. It changes w in
// place (clone first to keep the old state), but never one of its tasks: a
// task that changes is replaced by a changed copy. For a WorkflowStarted
// event w may be nil. Apply never fails on events the decider emits; an
// error means the log holds an event that does not fit this workflow.
func Apply(w *Workflow, ev schemas.Event) (*Workflow, error) {
	return apply(w, ev, nil)
}

// ApplyRecord folds the events of one log record, which are one
// decision's, into w as Apply does one by one, but merges into a loop's
// output in place after the record's first copy of it, as the decision
// that made them did (see fresh): a read model folding a record of n loop
// iterations copies the loop's output once, not n times.
func ApplyRecord(w *Workflow, events []schemas.Event) (*Workflow, error) {
	own := fresh{}
	for _, ev := range events {
		var err error
		if w, err = apply(w, ev, own); err != nil {
			return nil, err
		}
	}
	return w, nil
}

// fresh are the loop outputs Apply merged into new maps within one
// decision: no state outside the decision holds them, nor does any event,
// so the decision's next merge into one may be made in place. A DO_WHILE's
// output holds an entry per iteration, and copying it at every iteration
// made a loop of n iterations O(n²). It holds for the decider: it reads a
// loop's output before it changes it, never after through an older copy of
// the task, and hands a loop's output on (a JOIN's output) only once the
// loop ended, when no merge follows. The keys keep the maps alive, so no
// other map takes the address of one.
type fresh map[unsafe.Pointer]bool

func (f fresh) has(m map[string]any) bool {
	return f != nil && m != nil && f[reflect.ValueOf(m).UnsafePointer()]
}

func (f fresh) add(m map[string]any) {
	if f != nil {
		f[reflect.ValueOf(m).UnsafePointer()] = true
	}
}

func apply(w *Workflow, ev schemas.Event, own fresh) (*Workflow, error) {
	if s, ok := ev.(*schemas.WorkflowStarted); ok {
		if w != nil {
			return nil, fmt.Errorf("workflow %s started twice", s.WorkflowID)
		}
		w := started(s)
		w.Unsealed = !carriesSealed(s)
		return w, nil
	}
	if w == nil {
		return nil, fmt.Errorf("%s before workflow.started", ev.EventType())
	}
	wasQuiet := w.quietTouch(ev)
	switch e := ev.(type) {
	case *schemas.TaskScheduled:
		applyScheduled(w, e)
	case *schemas.TaskStarted:
		t := w.ownTask(e.TaskID)
		if t == nil {
			return nil, fmt.Errorf("workflow %s: start of unknown task %s", w.ID, e.TaskID)
		}
		// A callback asked for is over once the task is taken again
		// (Conductor's poll clears it).
		t.Status, t.WorkerID, t.UpdateTime, t.CallbackAfterSeconds = conductor.TaskInProgress, e.WorkerID, e.Time, 0
		if t.StartTime == 0 {
			// Taken again after a callback, or a loop once per condition
			// check: it started once, and timeoutSeconds counts from then.
			t.StartTime = e.Time
		}
		t.PollCount++
		for _, ref := range e.Resolved {
			// A refusal is the log's audit record, not state; a value
			// resolved again (each take after a callback resolves the
			// task's references anew) is named once.
			if ref.Refused == "" {
				t.Resolved = addRefs(t.Resolved, []schemas.ResolvedRef{ref})
			}
		}
		if t.FirstStartTime == 0 {
			t.FirstStartTime = e.Time
		}
		w.UpdateTime = e.Time
	case *schemas.TaskUpdated:
		t := w.ownTask(e.TaskID)
		if t == nil {
			return nil, fmt.Errorf("workflow %s: update of unknown task %s", w.ID, e.TaskID)
		}
		applyUpdated(t, e, w.Status == conductor.WorkflowPaused, own)
		if e.ClearsFailed {
			w.FailedTaskID, w.FailedTaskRefs, w.FailedTaskNames = "", nil, nil
		}
		w.UpdateTime = e.Time
	case *schemas.TaskLogged:
		t := w.ownTask(e.TaskID)
		if t == nil {
			return nil, fmt.Errorf("workflow %s: log for unknown task %s", w.ID, e.TaskID)
		}
		logs := slices.Clip(t.Logs)
		for i, line := range e.Lines {
			var ts int64
			if i < len(e.Times) {
				ts = e.Times[i]
			}
			logs = append(logs, conductor.TaskExecLog{Log: line, TaskID: t.ID, CreatedTime: ts})
		}
		t.Logs = logs
	case *schemas.VariablesUpdated:
		vars := copyMap(w.Variables)
		maps.Copy(vars, e.Variables)
		w.Variables, w.UpdateTime = vars, e.Time
	case *schemas.WorkflowStatusChanged:
		applyStatus(w, e)
	case *schemas.WorkflowReset:
		if err := applyReset(w, e); err != nil {
			return nil, err
		}
	case *schemas.WorkflowCompacted:
		applyCompacted(w)
	case *schemas.TasksRemoved:
		if err := applyRemoved(w, e); err != nil {
			return nil, err
		}
	case *schemas.WorkflowAdmitted:
		w.Queued = false
	case *schemas.WorkflowRunAs:
		if e.Principal != w.CreatedBy && !slices.Contains(w.AlsoRunsAs, e.Principal) {
			w.AlsoRunsAs = append(slices.Clip(w.AlsoRunsAs), e.Principal)
		}
	case *schemas.SecretsSealed:
		if e.Key != w.SecretsKey {
			// A new key (one compacted workflow sealed again): compacted
			// in its turn.
			w.Compacted, w.ShreddedNothing = false, false
		}
		w.SealsSecrets, w.SecretsKey = true, e.Key
	case *schemas.ValuesMasked:
		if w.Compacted && w.ShreddedNothing {
			// Compacted with no key, for the purges of the cached outputs
			// it masked then: those this finding's decision performed may
			// have failed, and only a compaction is tried until it is
			// recorded (AwaitsCompaction). One whose compaction shredded
			// data (under a key no SecretsSealed recorded, say) stays
			// compacted: reopened, it would take its tasks' late log
			// lines, which nothing can redact of what it was given, and
			// its next compaction, with nothing left to shred, would
			// take them for good.
			w.Compacted, w.ShreddedNothing = false, false
		}
		for _, p := range slices.Concat(e.Paths, e.Shred, prefixed(shredPrefix, e.Shred)) {
			if !slices.Contains(w.MaskedPaths, p) {
				w.MaskedPaths = append(slices.Clip(w.MaskedPaths), p)
			}
		}
		maskTexts(w, e.Texts)
		w.Resolved = addRefs(w.Resolved, e.Sealed)
		if w.Compacted {
			// Its key is destroyed: the values its starter found secret
			// late cannot go under it (guard's FindValues records them
			// shredded), and are replaced now, as its compaction replaced
			// its own, for good.
			shredState(w)
		}
	default:
		switch ok, err := applyOperator(w, ev); {
		case err != nil:
			return nil, err
		case !ok:
			return nil, fmt.Errorf("workflow %s: unexpected event %s", w.ID, ev.EventType())
		}
	}
	if w.Unsealed && carriesSealed(ev) {
		w.Unsealed = false
	}
	w.followSweep(ev, wasQuiet)
	w.followJoins(ev)
	return w, nil
}

// carriesSealed reports whether an event brings a sealed value into its
// workflow's data. TestUnsealedSeesEveryField holds it to every map an
// event carries.
func carriesSealed(ev schemas.Event) bool {
	switch e := ev.(type) {
	case *schemas.WorkflowStarted:
		return masking.HasSealed(e.Input) || masking.HasSealed(e.Variables)
	case *schemas.TaskScheduled:
		return masking.HasSealed(e.Input) || masking.HasSealed(e.Output)
	case *schemas.TaskUpdated:
		return masking.HasSealed(e.Output)
	case *schemas.VariablesUpdated:
		return masking.HasSealed(e.Variables)
	case *schemas.WorkflowStatusChanged:
		return masking.HasSealed(e.Output)
	case *schemas.WorkflowReset:
		return masking.HasSealed(e.Input) || masking.HasSealed(e.InputFields)
	case *schemas.WorkflowUpgraded:
		return masking.HasSealed(e.Input) || masking.HasSealed(e.InputFields)
	}
	return false
}

// setInput returns the input a reset or an upgrade leaves the workflow:
// input when set, else the one it had with fields replaced. Records from
// before fields were recorded alone carry the whole input, set.
func setInput(had map[string]any, set bool, input, fields map[string]any) map[string]any {
	switch {
	case set:
		return copyMap(input)
	case len(fields) > 0:
		out := copyMap(had)
		maps.Copy(out, fields)
		return out
	}
	return had
}

func started(s *schemas.WorkflowStarted) *Workflow {
	return &Workflow{
		ID: s.WorkflowID, Name: s.Name, Version: s.Version, DefJSON: s.Def,
		Status: conductor.WorkflowRunning, Input: copyMap(s.Input), Output: map[string]any{},
		Variables: copyMap(s.Variables), CorrelationID: s.CorrelationID, Priority: s.Priority,
		TaskToDomain: s.TaskToDomain, CreatedBy: s.CreatedBy, ParentWorkflowID: s.ParentWorkflowID,
		ParentWorkflowTaskID: s.ParentWorkflowTaskID, Depth: s.Depth, IdempotencyKey: s.IdempotencyKey,
		Event: s.Event, CreateTime: s.Time, StartTime: s.Time, UpdateTime: s.Time,
		// What was resolved into a child's input, sealed there whole in
		// text ("Bearer ${workflow.secrets.x}"): redaction looks for the
		// values alone, also once rebuilt from the state.
		Resolved:    s.Resolved,
		RateLimited: s.RateLimited, RateLimitKey: s.RateLimitKey, Queued: s.Queued,
	}
}

func applyScheduled(w *Workflow, e *schemas.TaskScheduled) {
	t := &Task{
		ID: e.TaskID, Ref: e.Ref, Name: e.Name, Type: e.Type, Status: e.Status, Seq: e.Seq,
		Input: copyMap(e.Input), Deferred: e.Deferred, SealedReads: e.SealedReads, Output: copyMap(e.Output),
		RetryCount: e.RetryCount, RetriedTaskID: e.RetriedTaskID, Iteration: e.Iteration,
		Domain: e.Domain, ScheduledTime: e.Time, FirstScheduled: e.FirstScheduled, AvailableAt: e.AvailableAt,
		UpdateTime: e.Time, Policy: e.Policy, Config: e.Config, TaskDef: e.TaskDef,
		SubWorkflowID: e.SubWorkflowID, ParentTaskID: e.ParentTaskID, Reason: e.Reason,
		Case: e.Case, CaseDefault: e.CaseDefault, Forked: e.Forked,
	}
	if t.FirstScheduled == 0 {
		t.FirstScheduled = e.Time
	}
	if t.Status == conductor.TaskScheduled && t.AvailableAt > e.Time {
		t.StartDelay = t.AvailableAt - e.Time
	}
	if t.Status == conductor.TaskScheduled && t.AvailableAt > e.Time && t.AvailableAt != Never && t.IsWorkerTask() {
		// A worker task that waits before it is handed out (a retry's
		// delay, a startDelay) waits out a callbackAfterSeconds until it
		// is taken, as Conductor's retry and mappers set it: it shows it,
		// and a reset of the callbacks hands it out at once.
		t.CallbackAfterSeconds = (t.AvailableAt - e.Time + 999) / 1000
	}
	if t.Status == conductor.TaskInProgress {
		t.StartTime, t.FirstStartTime = e.Time, e.Time
	}
	if conductor.TaskTerminal(t.Status) {
		t.StartTime, t.EndTime = e.Time, e.Time
	}
	if e.RetriedTaskID != "" {
		if old := w.ownTask(e.RetriedTaskID); old != nil {
			old.Retried = true
		}
	}
	w.Tasks = append(w.Tasks, t)
	w.Counter++
	w.UpdateTime = e.Time
}

func applyUpdated(t *Task, e *schemas.TaskUpdated, paused bool, own fresh) {
	if !e.KeepOutput {
		defer t.keepSealed(droppedSeals(t.Output))
	}
	switch {
	case e.KeepOutput:
	case e.MergeOutput:
		out := t.Output
		if !own.has(out) {
			out = copyMap(t.Output)
			own.add(out)
		}
		maps.Copy(out, e.Output)
		for _, k := range e.DropOutput {
			delete(out, k)
		}
		t.Output = out
	default:
		t.Output = copyMap(e.Output)
	}
	if e.WorkerID != "" {
		t.WorkerID = e.WorkerID
	}
	if e.Released {
		t.WorkerID = ""
	}
	if e.SubWorkflowID != "" {
		t.SubWorkflowID = e.SubWorkflowID
	}
	if e.Case != "" || e.CaseDefault {
		t.Case, t.CaseDefault = e.Case, e.CaseDefault
	}
	if e.LeaseExpired {
		t.LeaseExpiries++
	}
	t.UpdateTime = e.Time
	if e.LeaseExtended {
		return
	}
	t.Status, t.Reason, t.CallbackAfterSeconds = e.Status, e.Reason, e.CallbackAfterSeconds
	// A failure while paused is acted on at resume, which finds it by this
	// mark: the log's order says it came after the pause, whatever the
	// clocks of the engines that recorded the two.
	t.Held = paused && unsuccessful(e.Status)
	if e.AvailableAt != 0 {
		t.AvailableAt = e.AvailableAt
		if t.StartTime == 0 && t.AvailableAt-t.ScheduledTime < t.StartDelay {
			// Made due before its delay ran out (a reset of the
			// callbacks): it waited only until then, and its timeout
			// counts that, not a delay it never waited (up to a
			// backoffJitterMs of years).
			t.StartDelay = max(0, t.AvailableAt-t.ScheduledTime)
		}
	}
	switch {
	case conductor.TaskTerminal(e.Status):
		t.EndTime = e.Time
		if t.StartTime == 0 {
			t.StartTime = e.Time
		}
	case t.Type == conductor.TaskTypeDoWhile:
		// A loop between iterations, or reopened by retry or rerun, is
		// still the loop that started.
		t.EndTime = 0
	case e.Status == conductor.TaskScheduled:
		// Back in the queue (a worker asked to be called back later): it
		// keeps the time it first started.
		t.EndTime = 0
	case e.Status == conductor.TaskInProgress && t.StartTime == 0:
		t.StartTime = e.Time
	}
}

func applyStatus(w *Workflow, e *schemas.WorkflowStatusChanged) {
	w.Status, w.UpdateTime = e.Status, e.Time
	switch {
	case conductor.WorkflowTerminal(e.Status):
		w.EndTime, w.Reason, w.NoFailureWorkflow = e.Time, e.Reason, e.NoFailureWorkflow
		w.Output = copyMap(e.Output)
		if id := failureWorkflowOf(w); id != "" && !slices.Contains(w.FailureWorkflows, id) {
			w.FailureWorkflows = append(slices.Clip(w.FailureWorkflows), id)
		}
		w.FailedTaskRefs, w.FailedTaskNames, w.FailedTaskID = e.FailedTaskRefs, e.FailedTaskNames, e.FailedTaskID
		if e.Status != conductor.WorkflowCompleted && e.FailedTaskID == "" && !e.NoFailedTask {
			// Recorded before ends named their task: recovery starting
			// its failure workflow again, and a retry's next end, name
			// the one its engine named.
			w.FailedTaskID = endedByOf(w)
		}
	case e.Status == conductor.WorkflowRunning && e.Reason == "":
		// resume keeps everything else
		if e.RestartsTimeout {
			w.ResumeTime = e.Time
		}
	}
}

// endedByOf is the task an engine that did not record it named as what
// ended w, read from the ended state: the TERMINATE task that ended it
// (it completed as the workflow ended), else the first failed task, which
// is the one whose failure ended it when one did (those engines listed it
// first: such ends hold the names they recorded).
func endedByOf(w *Workflow) string {
	for i := len(w.Tasks) - 1; i >= 0; i-- {
		if t := w.Tasks[i]; t.Type == conductor.TaskTypeTerminate && t.Status == conductor.TaskCompleted && t.EndTime == w.EndTime {
			return t.ID
		}
	}
	if len(w.FailedTaskRefs) > 0 {
		if t := w.LatestByRef(w.FailedTaskRefs[0]); t != nil {
			return t.ID
		}
	}
	return ""
}

func applyReset(w *Workflow, e *schemas.WorkflowReset) error {
	w.Epoch, w.RerunUpTo = w.Epoch+1, e.RerunUpTo
	// A reset runs the workflow's tasks at once: the executor gave it a
	// place first, or refused it.
	w.Queued = false
	for i, t := range w.Tasks {
		if t.Held {
			// A new run: a failure held back in the old one is not its own
			// (tasks are shared with earlier states: copy before changing).
			c := *t
			c.Held = false
			w.Tasks[i] = &c
		}
	}
	if w.Compacted {
		// Its secrets key is destroyed, or about to be: whatever it seals
		// from now on goes under a new key, compacted in its turn.
		w.SealsSecrets, w.SecretsKey = false, ""
	}
	w.Compacted, w.ShreddedNothing = false, false
	w.Status, w.UpdateTime = conductor.WorkflowRunning, e.Time
	w.EndTime, w.Reason, w.Output = 0, "", map[string]any{}
	if !e.KeepsFailedTask {
		w.FailedTaskID = ""
		if e.Kind != schemas.ResetRestart {
			// Conductor's retry and restart leave the failed task names
			// set, for the run to show and its end to add to; its rerun
			// and updateAndPushParents (a parent run again because its
			// child was) clear them. Retries recorded before they were
			// kept (without KeepsFailedTask) fold as they did.
			w.FailedTaskRefs, w.FailedTaskNames = nil, nil
		}
	}
	if len(e.Def) > 0 {
		w.DefJSON, w.plan = e.Def, nil
		if def, err := parseDef(e.Def); err == nil {
			w.Version = def.Version
		}
	}
	w.Input = setInput(w.Input, e.SetInput, e.Input, e.InputFields)
	if e.CorrelationID != "" {
		w.CorrelationID = e.CorrelationID
	}
	w.ResetTime = e.Time
	switch e.Kind {
	case schemas.ResetRestart:
		w.keepResolved(w.Tasks)
		w.Tasks, w.CreateTime, w.StartTime = nil, e.Time, e.Time
		if def, err := w.Def(); err == nil {
			w.Variables = copyMap(def.Variables)
		}
	case schemas.ResetRerun:
		kept := w.Tasks[:0:0]
		for _, t := range w.Tasks {
			if t.Seq < e.KeepBeforeSeq {
				kept = append(kept, t)
			} else {
				w.keepResolved([]*Task{t})
			}
		}
		w.Tasks = kept
	case schemas.ResetRetry:
		w.LastRetriedTime = e.Time
	default:
		return fmt.Errorf("workflow %s: unknown reset kind %q", w.ID, e.Kind)
	}
	return nil
}

// applyRemoved drops the tasks of a DO_WHILE's iterations past its
// keepLastN. What they resolved at their hand-offs, and what they held
// sealed, stays named on the loop: redaction looks for those values in
// whatever the workflow holds later (guard rebuilds its memo from the
// state's tasks). The loop's output keeps no copy of a retried attempt's
// output (a session it sealed before it failed), nor of any input.
func applyRemoved(w *Workflow, e *schemas.TasksRemoved) error {
	gone := make(map[string]bool, len(e.TaskIDs))
	for _, id := range e.TaskIDs {
		gone[id] = true
	}
	var resolved []schemas.ResolvedRef
	kept := make([]*Task, 0, max(len(w.Tasks)-len(gone), 0))
	for _, t := range w.Tasks {
		if !gone[t.ID] {
			kept = append(kept, t)
			continue
		}
		if t.Active() {
			return fmt.Errorf("workflow %s: removal of task %s, which is %s", w.ID, t.ID, t.Status)
		}
		resolved = append(resolved, t.Resolved...)
		resolved = append(resolved, droppedSeals(t.Input)...)
		resolved = append(resolved, droppedSeals(t.Output)...)
	}
	w.Tasks, w.UpdateTime = kept, e.Time
	if len(resolved) == 0 {
		return nil
	}
	loop := w.ownTask(e.Loop)
	if loop == nil {
		return fmt.Errorf("workflow %s: removed tasks name unknown loop %s", w.ID, e.Loop)
	}
	loop.Resolved = addRefs(loop.Resolved, resolved)
	return nil
}

// keepResolved names on w what dropped resolved, and keeps what they held
// sealed (see Workflow.Resolved): a worker of the old run may echo a value
// its task sealed (a session it opened), and redaction, whose memo is
// rebuilt from the state once the workflow has ended, knew it only from
// the dropped task's output.
func (w *Workflow) keepResolved(dropped []*Task) {
	for _, t := range dropped {
		w.Resolved = addRefs(w.Resolved, t.Resolved)
		w.Resolved = addRefs(w.Resolved, droppedSeals(t.Input))
		w.Resolved = addRefs(w.Resolved, droppedSeals(t.Output))
	}
}

// keepSealed keeps on t the seals its output held before an update
// replaced it (an IN_PROGRESS update's _secrets, then the result's) that
// the new output does not hold: a worker may echo the first later, as one
// of a dropped task may. A value reported again the same is sealed as
// before (the guard's sealer), and kept by the output alone.
func (t *Task) keepSealed(held []schemas.ResolvedRef) {
	for _, ref := range held {
		if masking.Find(t.Output, func(s *masking.Sealed) bool { return bytes.Equal(s.Ciphertext, ref.Sealed) }) == nil {
			t.Resolved = addRefs(t.Resolved, []schemas.ResolvedRef{ref})
		}
	}
}

// droppedSeals are the values v holds sealed, as schemas.DroppedRefs.
func droppedSeals(v map[string]any) []schemas.ResolvedRef {
	var held []schemas.ResolvedRef
	masking.Find(v, func(s *masking.Sealed) bool {
		block := masking.KeyMasked
		if s.Kind == masking.KindSecrets {
			block = masking.KeySecrets
		}
		held = append(held, schemas.DroppedRef(block, s.Purpose, s.Ciphertext))
		return false
	})
	return held
}

// addRefs returns dst with the refs it does not name yet. dst may be
// shared with earlier states: it is never changed in place.
func addRefs(dst, refs []schemas.ResolvedRef) []schemas.ResolvedRef {
	for _, ref := range refs {
		if !slices.ContainsFunc(dst, func(r schemas.ResolvedRef) bool { return schemas.SameRef(r, ref) }) {
			dst = append(slices.Clip(dst), ref)
		}
	}
	return dst
}

// applyCompacted replaces every value sealed under the destroyed secrets
// key with "***": the read models keep no ciphertext that can no longer be
// opened, and a restart hands "***" to tasks that read such values, as
// Orkes documents.
func applyCompacted(w *Workflow) {
	w.Compacted = true
	// Nothing shredded, and no key recorded: the state holds all it did,
	// so redaction still looks for every value it looked for before.
	w.ShreddedNothing = !shredState(w) && !w.SealsSecrets
}

// shredState replaces w's values sealed under its secrets key, and those
// MaskedPaths marks for shredding, with "***", and reports whether it
// replaced any.
func shredState(w *Workflow) bool {
	in, inShredded := shred(w.Input)
	out, outShredded := shred(w.Output)
	vars, varsShredded := shred(w.Variables)
	refs, refsShredded := shredRefs(w.Resolved)
	w.Resolved = refs
	shredded := inShredded || outShredded || varsShredded || refsShredded
	// Most workflows mark nothing kept for shredding: no task's paths are
	// made to look for it (two strings a task, a quarter of the fold).
	kept := slices.ContainsFunc(w.MaskedPaths, func(p string) bool { return strings.HasPrefix(p, shredPrefix) })
	if kept {
		keptIn, keptOut, keptVars := shredKept(w, "input", in), shredKept(w, "output", out), shredKept(w, "variables", vars)
		shredded = shredded || !SameMap(keptIn, in) || !SameMap(keptOut, out) || !SameMap(keptVars, vars)
		in, out, vars = keptIn, keptOut, keptVars
	}
	w.Input, w.Output, w.Variables = in, out, vars
	for i, t := range w.Tasks {
		in, inShredded := shred(t.Input)
		out, outShredded := shred(t.Output)
		refs, refsShredded := shredRefs(t.Resolved)
		keptIn, keptOut, cfg, cfgShredded := in, out, t.Config, false
		if kept {
			keptIn, keptOut = shredKept(w, "task/"+t.ID+"/input", in), shredKept(w, "task/"+t.ID+"/output", out)
			cfg, cfgShredded = shredKeptConfig(w, t)
		}
		if inShredded || outShredded || refsShredded || cfgShredded || !SameMap(keptIn, in) || !SameMap(keptOut, out) {
			shredded = true
			c := *t
			c.Input, c.Output, c.Resolved, c.Config = keptIn, keptOut, refs, cfg
			w.Tasks[i] = &c
		}
	}
	return shredded
}

// ReasonPath is the path (schemas.ValuesMasked.Texts) of a task's reason,
// or, with no task, of the workflow's.
func ReasonPath(taskID string) string {
	if taskID == "" {
		return "reason"
	}
	return "task/" + taskID + "/reason"
}

// LogPath is the path (schemas.ValuesMasked.Texts) of a task's n-th log
// line.
func LogPath(taskID string, n int) string { return "task/" + taskID + "/log/" + strconv.Itoa(n) }

// maskTexts replaces the texts paths name with "***". A path this version
// does not know (a later one's) is left alone.
func maskTexts(w *Workflow, paths []string) {
	for _, p := range paths {
		if p == ReasonPath("") {
			w.Reason = masking.Mask
			continue
		}
		rest, ok := strings.CutPrefix(p, "task/")
		if !ok {
			continue
		}
		id, field, _ := strings.Cut(rest, "/")
		if w.taskIndex(id) < 0 {
			continue
		}
		switch line, isLog := strings.CutPrefix(field, "log/"); {
		case field == "reason":
			w.ownTask(id).Reason = masking.Mask
		case isLog:
			n, err := strconv.Atoi(line)
			if t := w.Tasks[w.taskIndex(id)]; err == nil && n >= 0 && n < len(t.Logs) {
				t = w.ownTask(id)
				t.Logs = slices.Clone(t.Logs)
				t.Logs[n].Log = masking.Mask
			}
		}
	}
}

// shredPrefix marks the MaskedPaths whose values compaction replaces: a
// value kept as written (a workflow input read elsewhere too) that also
// went into a _secrets block (schemas.ValuesMasked.Shred).
const shredPrefix = "shred:"

// ShredPath is how MaskedPaths marks path for compaction to replace.
func ShredPath(path string) string { return shredPrefix + path }

func prefixed(prefix string, paths []string) []string {
	out := make([]string, len(paths))
	for i, p := range paths {
		out[i] = prefix + p
	}
	return out
}

// shredKept replaces with "***" the top-level keys of m (at prefix) that
// w's MaskedPaths mark for shredding, and empties m when they mark it
// whole (a key's name holds the value). m is not changed: a copy is
// returned when anything is replaced.
func shredKept(w *Workflow, prefix string, m map[string]any) map[string]any {
	var out map[string]any
	for _, p := range w.MaskedPaths {
		if p == shredPrefix+prefix && len(m) > 0 {
			return map[string]any{}
		}
		key, ok := strings.CutPrefix(p, shredPrefix+prefix+".")
		if !ok {
			continue
		}
		if v, present := m[key]; !present || v == masking.Mask {
			continue
		}
		if out == nil {
			out = maps.Clone(m)
		}
		out[key] = masking.Mask
	}
	if out == nil {
		return m
	}
	return out
}

// shredRefs drops the sealed values of refs that the destroyed key
// sealed: all but the starter's _masked data opened into a child's input,
// sealed under the child's _masked key, which survives.
func shredRefs(refs []schemas.ResolvedRef) ([]schemas.ResolvedRef, bool) {
	shredded := func(r schemas.ResolvedRef) bool { return len(r.Sealed) > 0 && r.Kind != masking.KeyMasked }
	if !slices.ContainsFunc(refs, shredded) {
		return refs, false
	}
	out := slices.Clone(refs)
	for i := range out {
		if shredded(out[i]) {
			out[i].Sealed = nil
		}
	}
	return out, true
}

func shred(m map[string]any) (map[string]any, bool) {
	if m == nil {
		return nil, false
	}
	v, shredded := masking.Shred(m, masking.KindSecrets)
	return v.(map[string]any), shredded
}

// ownTask returns the task with id for Apply to change: a copy, which
// replaces it in w. A task is never changed in place: states share their
// tasks (see Clone), and the executions read model does not write again a
// task it has written.
func (w *Workflow) ownTask(id string) *Task {
	i := w.taskIndex(id)
	if i < 0 {
		return nil
	}
	c := *w.Tasks[i]
	w.Tasks[i] = &c
	return &c
}
