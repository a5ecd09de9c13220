package executions

import (
	"context"
	"errors"
	"math"
	"slices"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/projections/executions/query"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// TaskFields are the fields task queries and sorts may name. A task's
// times are EpochTime: one it has not set (startTime before it is taken,
// endTime while it runs) is the epoch, as Conductor's task index has it.
var TaskFields = query.Schema{
	"taskId": query.String, "taskType": query.String, "taskDefName": query.String,
	"taskRefName": query.String, "referenceTaskName": query.String, "taskReferenceName": query.String, "status": query.String,
	"workflowId": query.String, "workflowType": query.String, "correlationId": query.String,
	"domain": query.String, "workerId": query.String, "reasonForIncompletion": query.String,
	"retryCount": query.Number, "workflowPriority": query.Number,
	"scheduledTime": query.EpochTime, "startTime": query.EpochTime, "updateTime": query.EpochTime, "endTime": query.EpochTime,
	"executionTime": query.Number, "queueWaitTime": query.Number,
}

// taskDoc is the query.Doc of a task.
func taskDoc(w *engine.Workflow, t *engine.Task) query.Doc {
	return func(name string) any {
		switch name {
		case "taskId":
			return t.ID
		case "taskType":
			typ, _ := t.ShownType()
			return typ
		case "taskDefName":
			_, name := t.ShownType()
			return name
		case "taskRefName", "referenceTaskName", "taskReferenceName": // TaskSummary names it the last way
			return t.Ref
		case "status":
			return t.Status
		case "workflowId":
			return w.ID
		case "workflowType":
			return w.Name
		case "correlationId":
			return w.CorrelationID
		case "domain":
			return t.Domain
		case "workerId":
			return t.WorkerID
		case "reasonForIncompletion":
			return t.ShownReason() // matched and sorted as shown, as Conductor indexes the cut text
		case "retryCount":
			return int64(t.RetryCount)
		case "workflowPriority":
			return int64(w.Priority)
		case "scheduledTime":
			return t.ScheduledTime
		case "startTime":
			return t.StartTime
		case "updateTime":
			return t.UpdateTime
		case "endTime":
			return t.EndTime
		case "executionTime": // as the TaskSummary shows it: 0 until the task ran and ended
			if t.EndTime > 0 && t.StartTime > 0 {
				return t.EndTime - t.StartTime
			}
			return int64(0)
		case "queueWaitTime": // as the task's view shows it: 0 until it started
			if t.StartTime > 0 && t.ScheduledTime > 0 {
				return t.StartTime - t.ScheduledTime
			}
			return int64(0)
		}
		return nil
	}
}

// taskHit is a task that matched.
type taskHit struct {
	wfID, taskID string
	scheduled    int64
}

// SearchTasks returns the number of tasks that match s and the page of
// them s selects, newest scheduled first unless s sorts otherwise. Tasks
// of removed workflows are not found; those of archived ones are.
func (r *Reader) SearchTasks(ctx context.Context, s query.Search) (int, []*conductor.Task, error) {
	out := []*conductor.Task{}
	total, _, err := r.searchPage(ctx, s, func(c *wfCache, w *engine.Workflow, t *engine.Task) {
		out = append(out, c.view(w, t))
	})
	return total, out, err
}

// searchPage finds the tasks that match s, in one snapshot of the read
// model, and calls fn with each task of the page s selects that it reads
// (with its workflow, whole or its head, see wfCache.task) in the page's
// order: it returns how many match and the cache it read them through.
func (r *Reader) searchPage(ctx context.Context, s query.Search, fn func(c *wfCache, w *engine.Workflow, t *engine.Task)) (int, *wfCache, error) {
	r, release, err := r.snapshot()
	if err != nil {
		return 0, nil, err
	}
	defer release()
	c := newWfCache(r)
	hits, err := r.taskHits(ctx, s, c)
	if err != nil {
		return 0, c, err
	}
	for _, h := range pageOf(hits, s.Start, s.Size) {
		if w, t := c.task(ctx, h.wfID, h.taskID); t != nil {
			fn(c, w, t)
		}
	}
	return len(hits), c, c.err
}

// SearchTaskPage is SearchTasks answering with the workflow id of each
// task of the page rather than its view: what a search of workflows by
// their tasks (/api/workflow/search-by-tasks) reads of the tasks it finds.
func (r *Reader) SearchTaskPage(ctx context.Context, s query.Search) (int, []string, error) {
	ids := []string{}
	total, _, err := r.searchPage(ctx, s, func(_ *wfCache, w *engine.Workflow, _ *engine.Task) { ids = append(ids, w.ID) })
	return total, ids, err
}

// SearchTaskWorkflowIDs returns the workflow id of every task that
// matches s (up to MaxScan candidates), in s's order: a workflow with
// several such tasks is listed for each. One search finds them all, where
// paging through SearchTasks would skip tasks that pages before moved
// (a workflow removed, a task that changed) and read every candidate
// again for each page.
func (r *Reader) SearchTaskWorkflowIDs(ctx context.Context, s query.Search) ([]string, error) {
	r, release, err := r.snapshot()
	if err != nil {
		return nil, err
	}
	defer release()
	c := newWfCache(r)
	hits, err := r.taskHits(ctx, s, c)
	if err == nil {
		err = c.err
	}
	if err != nil {
		return nil, err
	}
	ids := make([]string, len(hits))
	for i, h := range hits {
		ids[i] = h.wfID
	}
	return ids, nil
}

// EachTask calls fn with each task that matches s (up to MaxScan
// candidates), in s's order, until fn returns false; s's Start and Size
// are not used. One search finds them all, where pages through
// SearchTasks by offset would end at a page shortened by a workflow
// removed while it was read (its tasks counted, not listed) and skip the
// tasks that a removal between pages moved up. A task whose workflow was
// removed by the time it is read is left out.
func (r *Reader) EachTask(ctx context.Context, s query.Search, fn func(*conductor.Task) bool) error {
	r, release, err := r.snapshot()
	if err != nil {
		return err
	}
	defer release()
	c := newWfCache(r)
	hits, err := r.taskHits(ctx, s, c)
	if err == nil {
		err = c.err
	}
	if err != nil {
		return err
	}
	for _, h := range hits {
		if err := ctx.Err(); err != nil {
			return err
		}
		w, t := c.task(ctx, h.wfID, h.taskID)
		if c.err != nil {
			return c.err
		}
		if t == nil || w.Removed && !w.Archived {
			continue
		}
		if !fn(c.view(w, t)) {
			return nil
		}
	}
	return nil
}

// taskHits returns the tasks that match s, in s's order, reading them
// through c.
func (r *Reader) taskHits(ctx context.Context, s query.Search, c *wfCache) ([]taskHit, error) {
	q, err := query.Parse(s.Query, TaskFields)
	if err != nil {
		return nil, err
	}
	keys, err := query.ParseSort(s.Sort, TaskFields)
	if err != nil {
		return nil, err
	}
	ft := query.ParseFreeText(s.FreeText)
	src := r.planTasks(ctx, q)
	var hits []taskHit
	err = r.taskCandidates(ctx, src, c, func(w *engine.Workflow, t *engine.Task, h taskHit) bool {
		if !src.covered || !ft.All() || s.Visible != nil {
			if w == nil {
				if w, t = c.task(ctx, h.wfID, h.taskID); t == nil {
					return true
				}
			}
			if !q.Match(taskDoc(w, t)) || !freeTextTask(ft, c, w, t) || s.Visible != nil && !s.Visible(w.Name, w.CreatedBy) {
				return true
			}
		}
		hits = append(hits, h)
		return true
	})
	if err != nil {
		return nil, err
	}
	if len(keys) == 0 || (len(keys) == 1 && keys[0].Field == "scheduledTime") {
		sortByTime(hits, len(keys) == 0 || keys[0].Desc, func(h taskHit) (int64, string) { return h.scheduled, h.taskID })
	} else {
		// Ties fall back to the default order, newest scheduled first:
		// the order candidates come in (one index value after another)
		// would make a page depend on how the query was written.
		keys = append(keys, query.SortKey{Field: "scheduledTime", Kind: query.EpochTime, Desc: true},
			query.SortKey{Field: "taskId", Kind: query.String, Desc: true})
		// The sort's fields of each hit, not its workflow: hits may be
		// many, their workflows large.
		docs := make(map[string]query.Doc, len(hits))
		for _, h := range hits {
			vals := make(map[string]any, len(keys))
			if w, t := c.task(ctx, h.wfID, h.taskID); t != nil {
				doc := taskDoc(w, t)
				for _, k := range keys {
					vals[k.Field] = doc(k.Field)
				}
			}
			docs[h.taskID] = func(name string) any { return vals[name] }
		}
		slices.SortFunc(hits, func(a, b taskHit) int { return query.Compare(keys, docs[a.taskID], docs[b.taskID]) })
	}
	return hits, nil
}

// freeTextTask reports whether t, a task of w, which c holds, matches ft.
func freeTextTask(ft query.FreeText, c *wfCache, w *engine.Workflow, t *engine.Task) bool {
	if ft.All() {
		return true
	}
	view := c.view(w, t) // masked: a search must not reveal secret values
	return ft.Match(t.ID, t.Name, t.Type, t.Ref, w.ID, w.Name, w.CorrelationID, searchable(view.InputData), searchable(view.OutputData))
}

// planTasks picks the candidates of a task query: tasks by id, the tasks
// of workflows found by id or a workflow index, or the task status index.
func (r *Reader) planTasks(ctx context.Context, q *query.Query) *source {
	conds := q.Conjuncts()
	if ids, _ := equalities(conds, "taskId"); ids != nil {
		var wfIDs []string
		var tasks []taskHit
		resolved := true
		for _, id := range ids {
			wf, err := r.TaskWorkflow(ctx, id)
			if err != nil {
				// Not indexed (the tasks of an archived workflow are
				// not): the scan below finds it.
				resolved = false
				break
			}
			if !slices.Contains(wfIDs, wf) {
				wfIDs = append(wfIDs, wf)
			}
			if !slices.ContainsFunc(tasks, func(h taskHit) bool { return h.taskID == id }) {
				tasks = append(tasks, taskHit{wfID: wf, taskID: id})
			}
		}
		if resolved {
			if r.wholeTasks {
				return &source{ids: wfIDs}
			}
			return &source{ids: wfIDs, tasks: tasks}
		}
	}
	if ids, _ := equalities(conds, "workflowId"); ids != nil {
		return &source{ids: ids}
	}
	// Tasks of the workflows an index finds, or the status index: whichever
	// has fewer entries (a workflow counts for several tasks).
	best := &source{prefixes: [][]byte{[]byte(prefixByStart)}, hi: math.MaxInt64 - 1}
	bestN := -1
	for _, ix := range []struct{ field, prefix string }{{"correlationId", prefixByCorr}, {"workflowType", prefixByName}} {
		if vals, at := equalities(conds, ix.field); at >= 0 {
			s := &source{hi: math.MaxInt64 - 1}
			for _, v := range vals {
				s.prefixes = append(s.prefixes, valuePrefix(ix.prefix, v))
			}
			if n := 8 * s.count(r, estimateLimit); bestN < 0 || n < bestN {
				best, bestN = s, n
			}
		}
	}
	if vals, at := equalities(conds, "status"); at >= 0 {
		lo, hi, used := timeRange(conds, "scheduledTime")
		s := &source{lo: lo, hi: hi, taskIndex: true}
		for _, v := range vals {
			s.prefixes = append(s.prefixes, valuePrefix(prefixTaskStat, v))
		}
		s.covered = q.Conjunctive() && len(used)+1 == len(conds)
		if n := s.count(r, estimateLimit); bestN < 0 || n <= bestN {
			best = s
		}
	}
	return best
}

// taskCandidates calls fn with each candidate task of src: with its
// workflow and task when it read them, else (status index) with the hit
// alone.
func (r *Reader) taskCandidates(ctx context.Context, src *source, c *wfCache, fn func(*engine.Workflow, *engine.Task, taskHit) bool) error {
	if src.taskIndex {
		var ferr error
		err := src.each(r, func(taskID string, at int64, wfID []byte) bool {
			if ctx.Err() != nil {
				ferr = ctx.Err()
				return false
			}
			return fn(nil, nil, taskHit{wfID: string(wfID), taskID: taskID, scheduled: at})
		})
		if err == nil {
			err = ferr
		}
		return err
	}
	seen := 0
	if src.tasks != nil {
		// Tasks by id: each with its workflow's head, not every task of
		// the workflow.
		for _, h := range src.tasks {
			if err := ctx.Err(); err != nil {
				return err
			}
			w, t := c.task(ctx, h.wfID, h.taskID)
			if t == nil || (w.Removed && !w.Archived) {
				continue
			}
			if seen++; seen > MaxScan || !fn(w, t, taskHit{wfID: w.ID, taskID: t.ID, scheduled: t.ScheduledTime}) {
				return nil
			}
		}
		return nil
	}
	return src.each(r, func(wfID string, _ int64, _ []byte) bool {
		if ctx.Err() != nil {
			return false
		}
		w := c.workflow(ctx, wfID)
		if w == nil || (w.Removed && !w.Archived) {
			return true
		}
		for _, t := range w.Tasks {
			if seen++; seen > MaxScan {
				return false
			}
			if !fn(w, t, taskHit{wfID: w.ID, taskID: t.ID, scheduled: t.ScheduledTime}) {
				return false
			}
		}
		return true
	})
}

// wfCache keeps the workflows one search decoded, up to maxCachedBytes
// of them as stored: the tasks of one workflow are often found apart (the
// status index orders them by time), and each would decode it again. A
// task found by id (its lookup, t/) is read alone, with its workflow's
// head, which the cache keeps: a search that finds a few tasks of a loop
// of thousands of iterations decodes those, not the loop. The reader is
// of one snapshot of the read model (Reader.snapshot), so that a head
// read once agrees with every task read after it: a view of a task masks
// what its workflow's head says to mask.
type wfCache struct {
	r *Reader
	m map[string]*engine.Workflow
	// heads are the workflows whose tasks were read alone, without their
	// tasks (Tasks nil), with their counts of tasks; nil for one not
	// stored.
	heads map[string]headCount
	// alone counts the tasks of each workflow read alone.
	alone map[string]int
	// views render the tasks of the workflows m holds, by id (see view).
	views map[string]func(*engine.Task) *conductor.Task
	bytes int
	// keys counts the keys of workflows read.
	keys int
	err  error
}

// maxCachedBytes bounds what one search keeps decoded, as stored: a
// search by a caller who sees only some workflows reads every candidate.
const maxCachedBytes = 8 << 20

func newWfCache(r *Reader) *wfCache {
	return &wfCache{r: r, m: map[string]*engine.Workflow{}, heads: map[string]headCount{}, alone: map[string]int{},
		views: map[string]func(*engine.Task) *conductor.Task{}}
}

// keep notes size bytes more kept, forgetting what was kept before when
// they pass maxCachedBytes.
func (c *wfCache) keep(size int) {
	if c.bytes+size > maxCachedBytes {
		clear(c.m)
		clear(c.heads)
		clear(c.views)
		c.bytes = 0
	}
	c.bytes += size
}

func (c *wfCache) fail(err error) {
	if err != nil && !errors.Is(err, fault.ErrNotFound) && c.err == nil {
		c.err = err
	}
}

func (c *wfCache) workflow(_ context.Context, id string) *engine.Workflow {
	if w, ok := c.m[id]; ok {
		return w
	}
	w, size, keys, err := c.r.workflowParts(id, true)
	c.fail(err)
	c.keep(size)
	c.keys += keys
	c.m[id] = w
	return w
}

// head returns workflow id without its tasks, and its count of tasks.
func (c *wfCache) head(id string) (*engine.Workflow, int) {
	if h, ok := c.heads[id]; ok {
		return h.w, h.tasks
	}
	w, tasks, size, keys, err := c.r.countedHead(id)
	c.fail(err)
	c.keep(size)
	c.keys += keys
	c.heads[id] = headCount{w, tasks}
	return w, tasks
}

type headCount struct {
	w     *engine.Workflow
	tasks int
}

// readWholeUpTo is the count of tasks up to which a workflow is read
// whole rather than its tasks alone: a search that finds most tasks of a
// workflow of a few (a status and a task type, say) reads each of them
// once either way, and one scan of a few keys costs less than a lookup
// and a scan for each.
var readWholeUpTo = 64

// readWholeFrom is the share of a workflow's tasks (1/readWholeFrom) read
// alone after which a search reads the rest of them from the whole
// workflow: a query the status index does not cover (a status and a task
// type) may find most tasks of a loop, each read alone then costing more
// than one scan of them all.
const readWholeFrom = 8

// countedHead reads workflow id without its tasks (as WorkflowHead), and
// counts its tasks (their statuses), with the size and count of the keys
// read.
func (r *Reader) countedHead(id string) (w *engine.Workflow, tasks, size, keys int, err error) {
	scan := countingScan(r.r, &size, &keys)
	token := eventlog.Token(id)
	w, _, err = readParts(scan, token, false)
	if err != nil || w == nil {
		if err == nil {
			err = fault.NotFound("workflow %s not found", id)
		}
		return nil, 0, size, keys, err
	}
	statuses, err := readStatuses(scan, token)
	if err != nil {
		return nil, 0, size, keys, err
	}
	return w, len(statuses), size, keys, nil
}

// view renders t, a task of w, which c holds: what a fork's or a JOIN's
// view shows of other tasks is found once for w (engine's TaskViews), not
// for each of its tasks a search renders. A task read alone, with its
// workflow's head, renders with the head but for those views, which read
// the whole workflow.
func (c *wfCache) view(w *engine.Workflow, t *engine.Task) *conductor.Task {
	if w.Tasks == nil {
		if !t.ViewReadsOtherTasks() {
			return t.Conductor(w)
		}
		whole := c.workflow(context.Background(), w.ID)
		if whole == nil || whole.TaskByID(t.ID) == nil {
			return t.Conductor(w) // not reached: the head and the task are of the snapshot the whole is
		}
		w, t = whole, whole.TaskByID(t.ID)
	}
	v, ok := c.views[w.ID]
	if !ok {
		v = w.TaskViews()
		c.views[w.ID] = v
	}
	return v(t)
}

// task returns task taskID of workflow wfID and the workflow: whole when
// c holds it, the workflow has few tasks (readWholeUpTo) or the search
// read many of them already (readWholeFrom), else its head, the task read
// alone where its lookup says, else (a task not indexed by id: an
// archived workflow's; an earlier layout's head that holds the tasks) the
// whole workflow.
func (c *wfCache) task(ctx context.Context, wfID, taskID string) (*engine.Workflow, *engine.Task) {
	if w, ok := c.m[wfID]; ok || c.r.wholeTasks {
		if !ok {
			w = c.workflow(ctx, wfID)
		}
		if w == nil {
			return nil, nil
		}
		return w, w.TaskByID(taskID)
	}
	head, tasks := c.head(wfID)
	if head == nil {
		return nil, nil
	}
	if head.Tasks != nil {
		return head, head.TaskByID(taskID)
	}
	if tasks > readWholeUpTo && c.alone[wfID] <= tasks/readWholeFrom {
		c.alone[wfID]++
		t, size, keys, err := c.r.listedTask(wfID, taskID)
		c.fail(err)
		c.keys += keys
		if t != nil {
			c.keep(size)
			return head, t
		}
	}
	w := c.workflow(ctx, wfID)
	if w == nil {
		return nil, nil
	}
	return w, w.TaskByID(taskID)
}

// listedTask reads task taskID of workflow wfID where its lookup says,
// with the size and the count of the workflow's keys read, or nil if it
// is not there.
func (r *Reader) listedTask(wfID, taskID string) (t *engine.Task, size, keys int, err error) {
	listedIn, i, err := taskLookupIn(r.r, taskID)
	if err != nil || listedIn != wfID {
		if errors.Is(err, fault.ErrNotFound) {
			err = nil
		}
		return nil, 0, 0, err
	}
	if t, err = readTaskAt(countingScan(r.r, &size, &keys), eventlog.Token(wfID), i); err != nil || t == nil || t.ID != taskID {
		return nil, size, keys, err
	}
	return t, size, keys, nil
}

// snapshot returns a reader of one snapshot of the read model, and its
// release.
func (r *Reader) snapshot() (*Reader, func(), error) {
	at, _, release, err := r.store.ReaderAt(Name)
	if err != nil {
		return nil, nil, err
	}
	return &Reader{r: at, store: r.store, wholeTasks: r.wholeTasks}, func() { _ = release() }, nil
}
