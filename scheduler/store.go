package scheduler

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/vmihailenco/msgpack/v5"
	"golang.org/x/text/unicode/norm"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/internal/taglimit"
	"github.com/flowvault/flowvault/masking"
	"github.com/flowvault/flowvault/projections"
	"github.com/flowvault/flowvault/projections/executions/query"
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// Waiter blocks until the schedules read model has applied a sequence.
type Waiter interface {
	WaitFor(ctx context.Context, seq uint64) error
}

// Store reads and changes schedules.
type Store struct {
	log     *eventlog.Log
	pstore  *projections.Store // for the due index's repairs (see fixDue)
	reader  projections.Reader
	now     func() time.Time
	logger  *slog.Logger
	updater *projections.Updater[*State]

	// folded holds each schedule's state as of its last fold, so that a
	// fold reads only what was appended since: a schedule that fires every
	// second appends two records a second, and the firer folds it at
	// every fire.
	mu     sync.Mutex
	folded map[string]State
}

// New returns a schedule store over the log and the schedules read model.
func New(log *eventlog.Log, store *projections.Store, waiter Waiter, logger *slog.Logger) *Store {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Store{log: log, pstore: store, reader: store.Reader(ProjectionName), now: time.Now, logger: logger, folded: map[string]State{}}
	// Writes decide on the log's state, not on a read model that may lag.
	s.updater = projections.NewUpdater(projections.Updater[*State]{Log: log, Waiter: waiter, Logger: logger, Now: s.now,
		What: "schedules", Read: s.logView, Fold: s.logView})
	return s
}

// logView folds a schedule's subject from the log.
func (s *Store) logView(ctx context.Context, subject string) (projections.View[*State], error) {
	st, err := s.fold(ctx, subject)
	if err != nil || st == nil {
		return projections.View[*State]{FromLog: true}, err
	}
	return projections.View[*State]{KV: st, Seq: st.Seq, FromLog: true}, nil
}

// fold returns the state of a schedule's subject, nil when it has none.
func (s *Store) fold(ctx context.Context, subject string) (*State, error) {
	var st *State
	s.mu.Lock()
	if c, ok := s.folded[subject]; ok {
		st = &c // Apply replaces what it changes, never writes through
	}
	s.mu.Unlock()
	if st == nil {
		// Not folded here yet (this engine's first look since it
		// started, or since the cache was cleared): the read model holds
		// the same fold up to a sequence, and only what the log has
		// after it is read. A schedule appends two records a tick and its
		// subject is never compacted: an every-second schedule's is
		// 170,000 records a day, read whole in seconds, a month's in
		// minutes, while the firer's scan waits.
		var err error
		if st, err = loadState(s.reader, strings.TrimPrefix(subject, subjectPrefix)); err != nil {
			return nil, err
		}
	}
	var after uint64
	if st != nil {
		after = st.Seq
	}
	recs, err := s.log.ReadSubject(ctx, subject, after)
	if err != nil {
		return nil, err
	}
	for _, r := range recs {
		if r.Err != nil {
			return nil, r.Err
		}
		for _, env := range r.Events {
			ev, err := schemas.Default.Decode(env)
			if err != nil {
				return nil, err
			}
			if st, err = Apply(st, ev); err != nil {
				return nil, err
			}
		}
		st.Seq = r.Seq
	}
	if st != nil && len(recs) > 0 {
		s.mu.Lock()
		if len(s.folded) >= maxFolded {
			clear(s.folded) // folded again from the log on demand
		}
		s.folded[subject] = *st
		s.mu.Unlock()
	}
	return st, nil
}

// maxFolded bounds the schedules whose folded state is kept in memory.
const maxFolded = 10000

// load folds a schedule's subject from the log (nil: no such schedule).
func (s *Store) load(ctx context.Context, name string) (*State, error) {
	return s.fold(ctx, Subject(name))
}

// append writes the firer's events to a schedule's subject, expecting
// sequence expected: of engines firing one schedule, one wins.
func (s *Store) append(ctx context.Context, name string, expected uint64, events []schemas.Event) (uint64, error) {
	subject := Subject(name)
	envs, err := projections.Envelopes(rand.Text(), subject, expected, "", s.now(), events)
	if err != nil {
		return 0, err
	}
	return s.log.Append(ctx, subject, envs, expected)
}

// appendEvents runs one write on a schedule (see projections.Updater).
func (s *Store) appendEvents(ctx context.Context, name, principal string, decide func(st *State) ([]schemas.Event, error)) error {
	_, err := s.updater.Update(ctx, Subject(name), principal, func(v projections.View[*State]) ([]schemas.Event, error) {
		return decide(v.KV)
	})
	return err
}

func exists(st *State) bool { return st != nil && !st.Deleted }

// Save creates or replaces a schedule.
//
// checked is the schedule as the caller's access was checked on it (nil:
// it did not exist, so CREATE was checked): the save applies to that
// schedule only. Another created meanwhile, or re-created, re-tagged or
// deleted, answers fault.ErrConflict: the read paths the check looked at
// lag the log, and the access a schedule grants follows its creator and
// tags.
func (s *Store) Save(ctx context.Context, def *conductor.WorkflowSchedule, principal string, checked *conductor.WorkflowSchedule) error {
	tags, err := validate(def)
	if err != nil {
		return err
	}
	if err := checkFires(def, s.now()); err != nil {
		return err
	}
	clean := *def
	clean.CreatedBy, clean.UpdatedBy, clean.CreateTime, clean.UpdatedTime, clean.PausedReason, clean.Tags = "", "", 0, 0, "", nil
	if def.StartWorkflowRequest != nil {
		// Its runs start as the principal that saves it, whatever the
		// request says: a createdBy naming another (an admin) would read
		// as though it ran as them.
		req := *def.StartWorkflowRequest
		req.CreatedBy = principal
		clean.StartWorkflowRequest = &req
	}
	now := s.now().UnixMilli()
	return s.appendEvents(ctx, def.Name, principal, func(st *State) ([]schemas.Event, error) {
		if !sameSchedule(st, checked) {
			return nil, fault.Stale("schedule %s changed while this request's access was checked: try again", def.Name)
		}
		// A save says paused but no reason (Orkes's SaveScheduleRequest
		// has none): one that leaves the schedule paused keeps why it
		// was, so that a schedule edited during an admin's pause-all is
		// resumed by the resume-all, and a security pause still says
		// what it is. The event records the reason, so a replay folds
		// what this write decided.
		saved := clean
		if exists(st) && st.Def.Paused && saved.Paused {
			saved.PausedReason = st.Def.PausedReason
		}
		raw, err := json.Marshal(saved)
		if err != nil {
			return nil, err
		}
		evs := []schemas.Event{&schemas.ScheduleSaved{Def: raw, Time: now, By: principal}}
		if len(tags) > 0 {
			evs = append(evs, tagsEvent(tags, now, principal))
		}
		return evs, nil
	})
}

// sameSchedule reports whether st is the schedule checked describes (nil:
// none), as far as access goes: the same life, with the same tags.
func sameSchedule(st *State, checked *conductor.WorkflowSchedule) bool {
	if checked == nil || !exists(st) {
		return checked == nil && !exists(st)
	}
	return st.Def.CreateTime == checked.CreateTime && st.Def.CreatedBy == checked.CreatedBy &&
		slices.Equal(st.Def.Tags, checked.Tags)
}

func tagsEvent(tags []conductor.Tag, now int64, by string) *schemas.ScheduleTagsSet {
	ev := &schemas.ScheduleTagsSet{Time: now, By: by}
	for _, t := range tags {
		ev.Tags = append(ev.Tags, schemas.DefTag{Key: t.Key, Value: t.Value})
	}
	return ev
}

// Get returns a schedule.
func (s *Store) Get(_ context.Context, name string) (*conductor.WorkflowSchedule, error) {
	st, err := s.stored(name)
	if err != nil {
		return nil, err
	}
	return shown(st.Def), nil
}

// Access returns the creator and tags of schedule name, what access to it
// follows of it besides grants, from one read of its record: read apart,
// a schedule deleted and created again by someone else between the reads
// would lend the former life's tags to the new life's creator.
func (s *Store) Access(_ context.Context, name string) (creator string, tags []conductor.Tag, err error) {
	st, err := s.stored(name)
	if err != nil {
		return "", nil, err
	}
	return st.Def.CreatedBy, st.Def.Tags, nil
}

// stored reads schedule name from the read model (fault.ErrNotFound: it
// has none, or one deleted).
func (s *Store) stored(name string) (*State, error) {
	st, err := loadState(s.reader, eventlog.Token(name))
	if err != nil {
		return nil, err
	}
	if !exists(st) {
		return nil, fault.NotFound("schedule %s not found", name)
	}
	return st, nil
}

// shown is what the read paths show of a schedule: a copy whose input
// reads "***" under every _secrets or _masked key. Save refuses such
// input; this covers schedules saved before it did.
func shown(def conductor.WorkflowSchedule) *conductor.WorkflowSchedule {
	def.StartWorkflowRequest = shownRequest(def.StartWorkflowRequest)
	return &def
}

func shownRequest(r *conductor.StartWorkflowRequest) *conductor.StartWorkflowRequest {
	if r == nil {
		return nil
	}
	c := *r
	c.Input = masking.KeysMap(c.Input)
	return &c
}

// List returns every schedule, or those starting the workflow name.
func (s *Store) List(_ context.Context, name string) ([]*conductor.WorkflowSchedule, error) {
	out := []*conductor.WorkflowSchedule{}
	var derr error
	err := s.reader.Scan([]byte(keyState), func(_, v []byte) bool {
		var st State
		if derr = msgpack.Unmarshal(v, &st); derr != nil {
			return false
		}
		if st.Deleted {
			return true
		}
		if name == "" || workflowName(st.Def.StartWorkflowRequest) == name {
			out = append(out, shown(st.Def))
		}
		return true
	})
	if err == nil {
		err = derr
	}
	return out, err
}

// mustBe refuses to change st unless it is the schedule checked describes
// (fault.ErrConflict) and exists (fault.ErrNotFound).
func (s *Store) mustBe(name string, st *State, checked *conductor.WorkflowSchedule) error {
	if !sameSchedule(st, checked) {
		return fault.Stale("schedule %s changed while this request's access was checked: try again", name)
	}
	if !exists(st) {
		return fault.NotFound("schedule %s not found", name)
	}
	return nil
}

// Delete removes a schedule, checked as the caller's access was checked
// on it (see Save): another created meanwhile, or re-created or
// re-tagged, answers fault.ErrConflict.
func (s *Store) Delete(ctx context.Context, name, principal string, checked *conductor.WorkflowSchedule) error {
	return s.appendEvents(ctx, name, principal, func(st *State) ([]schemas.Event, error) {
		if err := s.mustBe(name, st, checked); err != nil {
			return nil, err
		}
		return []schemas.Event{&schemas.ScheduleDeleted{Time: s.now().UnixMilli(), By: principal}}, nil
	})
}

// SetPaused pauses (with a reason) or resumes a schedule, checked as the
// caller's access was checked on it (see Delete). A reason that reads as
// the firer's security pause is refused (fault.ErrInvalid).
func (s *Store) SetPaused(ctx context.Context, name string, paused bool, reason, principal string, checked *conductor.WorkflowSchedule) error {
	if paused {
		if err := checkPauseReason(reason); err != nil {
			return err
		}
	}
	return s.appendEvents(ctx, name, principal, func(st *State) ([]schemas.Event, error) {
		if err := s.mustBe(name, st, checked); err != nil {
			return nil, err
		}
		if st.Def.Paused == paused && st.Def.PausedReason == reason {
			return nil, nil
		}
		return []schemas.Event{&schemas.SchedulePauseChanged{Paused: paused, Reason: reason, Time: s.now().UnixMilli(), By: principal}}, nil
	})
}

// checkPauseReason refuses a user's pause reason that would pass for the
// firer's own security pause: operators and tools read a "Security Error"
// reason as "the owner lost the right to start this workflow", and a
// schedule paused with one by anyone else would hide why it really
// stopped. Only letters are compared, case folded and as they look, so
// that spacing, punctuation, invisible characters, accents, full-width
// and look-alike letters ("Security-Error", "\u200bSECURITY ERROR",
// "Sécurity Error", "Ｓecurity Error", Cyrillic "Ѕесurity Error") do not
// get round it.
func checkPauseReason(reason string) error {
	want := []rune(strings.ToLower(strings.ReplaceAll(securityReasonPrefix, " ", "")))
	i := 0
	for _, r := range norm.NFKD.String(reason) {
		if i == len(want) {
			break
		}
		if !unicode.IsLetter(r) {
			continue // the marks the decomposition split off included
		}
		if lookalike(r) != want[i] {
			return nil
		}
		i++
	}
	if i < len(want) {
		return nil
	}
	ve := &fault.ValidationError{}
	ve.Add("reason", "a pause reason may not start with %q: flowvault gives that reason to the schedules it pauses "+
		"when their owner may no longer start the workflow; give another reason", securityReasonPrefix)
	return ve.Err()
}

// lookalikes are the Cyrillic, Greek and Armenian letters that look like
// the Latin ones of "security error" (from Unicode's confusables);
// compatibility decomposition folds full-width and mathematical forms.
var lookalikes = map[rune]rune{
	'ѕ': 's', 'е': 'e', 'є': 'e', 'с': 'c', 'ϲ': 'c', 'υ': 'u', 'ս': 'u', 'г': 'r',
	'і': 'i', 'ι': 'i', 'ı': 'i', 'т': 't', 'τ': 't', 'у': 'y', 'ү': 'y', 'γ': 'y', 'о': 'o', 'ο': 'o', 'օ': 'o',
}

// lookalike returns the lower-case Latin letter r looks like, or r.
func lookalike(r rune) rune {
	r = unicode.ToLower(r)
	if l, ok := lookalikes[r]; ok {
		return l
	}
	return r
}

// AdminPauseReason is the pausedReason PauseAll gives the schedules it
// pauses, and by which ResumeAll knows them.
const AdminPauseReason = "Paused by an admin: all schedules paused (GET /api/scheduler/admin/pause)"

// PauseAll pauses every schedule that runs, as Orkes's pauseAllSchedules
// stops all scheduling. Orkes's switch is one server's; each of ours is
// paused in the log instead, so that every engine stops firing it and it
// stays paused across restarts. It returns how many it paused.
func (s *Store) PauseAll(ctx context.Context, principal string) (int, error) {
	return s.changeAll(ctx, principal, func(st *State) *schemas.SchedulePauseChanged {
		if st.Def.Paused {
			return nil
		}
		return &schemas.SchedulePauseChanged{Paused: true, Reason: AdminPauseReason, Time: s.now().UnixMilli(), By: principal}
	})
}

// ResumeAll resumes the schedules PauseAll paused, and only those: a
// schedule paused on its own, or by the firer for its owner's lost
// right, stays paused, as it would under Orkes's switch. It returns how
// many it resumed.
func (s *Store) ResumeAll(ctx context.Context, principal string) (int, error) {
	return s.changeAll(ctx, principal, func(st *State) *schemas.SchedulePauseChanged {
		if !st.Def.Paused || st.Def.PausedReason != AdminPauseReason {
			return nil
		}
		return &schemas.SchedulePauseChanged{Paused: false, Time: s.now().UnixMilli(), By: principal}
	})
}

// changeAll appends change's event (nil: none) to every schedule the read
// model lists, each decided on the schedule as its log has it.
func (s *Store) changeAll(ctx context.Context, principal string, change func(*State) *schemas.SchedulePauseChanged) (int, error) {
	list, err := s.List(ctx, "")
	if err != nil {
		return 0, fmt.Errorf("list schedules: %w", err)
	}
	n := 0
	for _, def := range list {
		changed := false
		err := s.appendEvents(ctx, def.Name, principal, func(st *State) ([]schemas.Event, error) {
			changed = false
			if !exists(st) {
				return nil, nil // deleted since the list
			}
			ev := change(st)
			if ev == nil {
				return nil, nil
			}
			changed = true
			return []schemas.Event{ev}, nil
		})
		if err != nil {
			return n, fmt.Errorf("schedule %s: %w", def.Name, err)
		}
		if changed {
			n++
		}
	}
	return n, nil
}

// Tags returns the tags of schedule name if it is the schedule checked
// describes (see GetChecked).
func (s *Store) Tags(ctx context.Context, name string, checked *conductor.WorkflowSchedule) ([]conductor.Tag, error) {
	def, err := s.GetChecked(ctx, name, checked)
	if err != nil {
		return nil, err
	}
	if def.Tags == nil {
		return []conductor.Tag{}, nil
	}
	return def.Tags, nil
}

// GetChecked returns schedule name if it is the schedule checked
// describes (nil: none), as Delete changes only that one: a read whose
// access was checked on one schedule shows no other, created again under
// the name or tagged otherwise meanwhile (fault.ErrConflict, to send
// again).
func (s *Store) GetChecked(_ context.Context, name string, checked *conductor.WorkflowSchedule) (*conductor.WorkflowSchedule, error) {
	st, err := loadState(s.reader, eventlog.Token(name))
	if err != nil {
		return nil, err
	}
	if err := s.mustBe(name, st, checked); err != nil {
		return nil, err
	}
	return shown(st.Def), nil
}

// ChangeTags adds (merging by key) or removes tags, held to what every
// holder's are (taglimit), on the schedule checked describes (as Save
// does): a tag may grant access, and must not land on a schedule created
// again, or tagged otherwise, since the caller's access was checked.
func (s *Store) ChangeTags(ctx context.Context, name string, tags []conductor.Tag, remove bool, principal string, checked *conductor.WorkflowSchedule) error {
	if remove {
		tags = taglimit.Removal(tags)
	} else {
		ve := &fault.ValidationError{}
		tags = taglimit.Check(ve, "", tags)
		if err := ve.Err(); err != nil {
			return err
		}
	}
	return s.appendEvents(ctx, name, principal, func(st *State) ([]schemas.Event, error) {
		if err := s.mustBe(name, st, checked); err != nil {
			return nil, err
		}
		merged := map[string]string{}
		for _, t := range st.Def.Tags {
			merged[t.Key] = t.Value
		}
		for _, t := range tags {
			if remove {
				if merged[t.Key] == t.Value {
					delete(merged, t.Key)
				}
			} else {
				merged[t.Key] = t.Value
			}
		}
		keys := make([]string, 0, len(merged))
		for k := range merged {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		next := make([]conductor.Tag, 0, len(keys))
		for _, k := range keys {
			next = append(next, conductor.Tag{Key: k, Value: merged[k]})
		}
		if sameTags(st.Def.Tags, next) {
			return nil, nil // a record saying nothing new
		}
		if err := taglimit.Fit("", "schedule "+name, len(st.Def.Tags), len(next)); err != nil {
			return nil, err
		}
		return []schemas.Event{tagsEvent(next, s.now().UnixMilli(), principal)}, nil
	})
}

// sameTags reports whether cur, in the order a save kept it, holds the
// tags of next (sorted by key) and no others.
func sameTags(cur, next []conductor.Tag) bool {
	if len(cur) != len(next) {
		return false
	}
	sorted := slices.Clone(cur)
	slices.SortFunc(sorted, func(a, b conductor.Tag) int {
		return cmp.Or(strings.Compare(a.Key, b.Key), strings.Compare(a.Value, b.Value))
	})
	return slices.Equal(sorted, next)
}

// ExecutionFields are the fields an executions search may query and sort
// by.
var ExecutionFields = query.Schema{
	"scheduleName": query.String, "workflowName": query.String, "workflowId": query.String,
	"executionId": query.String, "state": query.String, "reason": query.String, "zoneId": query.String,
	"scheduledTime": query.Time, "executionTime": query.Time,
}

func executionDoc(x *conductor.ScheduleExecution) query.Doc {
	return func(field string) any {
		switch field {
		case "scheduleName":
			return x.ScheduleName
		case "workflowName":
			return x.WorkflowName
		case "workflowId":
			return x.WorkflowID
		case "executionId":
			return x.ExecutionID
		case "state":
			return x.State
		case "reason":
			return x.Reason
		case "zoneId":
			return x.ZoneID
		case "scheduledTime":
			return x.ScheduledTime
		case "executionTime":
			return x.ExecutionTime
		}
		return nil
	}
}

// Executions searches the fire records (Orkes's search/executions: query,
// freeText and sort as in workflow search; newest first by default) among
// those of the schedules visible accepts (nil: all). The total counts only
// those, so paging reveals nothing hidden.
//
// visible is asked once per schedule name: whether the caller may read it,
// and the schedule its access was checked on (nil: none), read before the
// check. A record shows only when that is the schedule it belongs to: one
// deleted and created again by another principal, or tagged otherwise,
// since the records were read is checked again, and after executionTries
// such changes the search answers fault.ErrConflict (to send again).
func (s *Store) Executions(_ context.Context, search query.Search, visible func(name string) (*conductor.WorkflowSchedule, bool)) ([]conductor.ScheduleExecution, int, error) {
	q, err := query.Parse(search.Query, ExecutionFields)
	if err != nil {
		return nil, 0, err
	}
	keys, err := query.ParseSort(search.Sort, ExecutionFields)
	if err != nil {
		return nil, 0, err
	}
	keys = append(keys, query.SortKey{Field: "scheduledTime", Kind: query.Time, Desc: true})
	ft := query.ParseFreeText(search.FreeText)
	match := func(x *conductor.ScheduleExecution) bool {
		return q.Match(executionDoc(x)) && ft.Match(x.ScheduleName, x.WorkflowName, x.WorkflowID, x.ExecutionID, x.State, x.Reason)
	}
	var all []conductor.ScheduleExecution
	for range executionTries {
		if all, err = s.visibleExecutions(match, visible); !errors.Is(err, fault.ErrStale) {
			break
		}
	}
	if err != nil {
		return nil, 0, err
	}
	sort.SliceStable(all, func(i, j int) bool { return query.Less(keys, executionDoc(&all[i]), executionDoc(&all[j])) })
	total := len(all)
	if search.Start >= total {
		return []conductor.ScheduleExecution{}, total, nil
	}
	return all[search.Start:min(total, search.Start+search.Size)], total, nil
}

// executionTries bounds how often an executions search reads the records
// again for a schedule that changed while it was checked, as a definition
// listing does.
const executionTries = 3

// visibleExecutions returns the records match accepts of the schedules
// visible accepts (see Executions). The schedules' states and their
// records are read by one iterator, so at one moment: each record is
// judged on the schedule it belongs to, never on one created under its
// name since.
func (s *Store) visibleExecutions(match func(*conductor.ScheduleExecution) bool, visible func(string) (*conductor.WorkflowSchedule, bool)) ([]conductor.ScheduleExecution, error) {
	states := map[string]*State{}
	shows := map[string]bool{} // by token
	var all []conductor.ScheduleExecution
	var ferr error
	err := s.reader.ScanRange([]byte(keyState), []byte(keyExecutionEnd), false, func(k, v []byte) bool {
		if bytes.HasPrefix(k, []byte(keyState)) {
			var st State
			if ferr = msgpack.Unmarshal(v, &st); ferr != nil {
				return false
			}
			states[string(k[len(keyState):])] = &st
			return true
		}
		if !bytes.HasPrefix(k, []byte(keyExecution)) || len(k) < len(keyExecution)+9 {
			return true
		}
		token := string(k[len(keyExecution) : len(k)-9])
		show, known := shows[token]
		if !known {
			if show, ferr = recordsShow(states[token], visible); ferr != nil {
				return false
			}
			shows[token] = show
		}
		if !show {
			return true
		}
		var x conductor.ScheduleExecution
		if ferr = json.Unmarshal(v, &x); ferr != nil {
			return false
		}
		if match(&x) {
			x.Request = shownRequest(x.Request)
			all = append(all, x)
		}
		return true
	})
	if err == nil {
		err = ferr
	}
	return all, err
}

// recordsShow reports whether the records of the schedule st describes show:
// visible accepts it, checked on this schedule (fault.ErrStale when it
// was checked on another).
func recordsShow(st *State, visible func(string) (*conductor.WorkflowSchedule, bool)) (bool, error) {
	if !exists(st) {
		return false, nil // records outliving their schedule are not shown
	}
	if visible == nil {
		return true, nil
	}
	checked, ok := visible(st.Def.Name)
	if ok && !sameSchedule(st, checked) {
		return false, fault.Stale("schedule %s changed while this request's access was checked: try again", st.Def.Name)
	}
	return ok, nil
}

// MaxNextFew is how many times NextFew answers at most, as Orkes.
const MaxNextFew = 5

// NextFew lists the next fire times of a cron expression from now, or
// from start when it lies ahead, up to end (0: none) and to limit (0
// answers none, as Orkes; more than MaxNextFew answers MaxNextFew).
func NextFew(cronExpr string, start, end int64, limit int) ([]int64, error) {
	// Start and end times a save refuses are refused too: unchecked, a
	// start of math.MinInt64 wrapped to the last instant there is and
	// answered no times, and a negative end read as none.
	ve := &fault.ValidationError{}
	checkTimes(ve, start, end)
	if limit < 0 {
		ve.Add("limit", "%d: want 0-%d", limit, MaxNextFew)
	}
	if err := ve.Err(); err != nil {
		return nil, err
	}
	limit = min(limit, MaxNextFew)
	def := &conductor.WorkflowSchedule{CronExpression: cronExpr, ScheduleStartTime: start, ScheduleEndTime: end}
	if _, err := parse(def); err != nil {
		return nil, fault.Invalid("%v", err)
	}
	// What saving refuses is refused here too: a preview that lists
	// times for an expression the save then refuses answers the
	// question it is asked for wrongly.
	if err := checkCron(cronExpr); err != nil {
		return nil, fault.Invalid("cron expression %q: %v", cronExpr, err)
	}
	now := time.Now()
	if err := checkFires(def, now); err != nil {
		return nil, err
	}
	out := []int64{}
	// NextAfter starts no earlier than the start time itself (a tick
	// there fires): counting from max(start, now) would skip it.
	t := now.UnixMilli()
	for len(out) < limit {
		if t = NextAfter(def, t); t == 0 {
			break
		}
		out = append(out, t)
	}
	return out, nil
}

// workflowID is the id of the workflow a fire time starts.
func workflowID(name string, at int64) string {
	return engine.DeriveID("schedule", name, strconv.FormatInt(at, 10))
}

func dueToken(key []byte) (int64, string, error) {
	k := key[len(keyDue):]
	if len(k) < 8 {
		return 0, "", fmt.Errorf("bad due key %q", key)
	}
	return int64(binary.BigEndian.Uint64(k[:8])), string(k[8:]), nil
}
