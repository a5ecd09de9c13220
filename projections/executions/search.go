package executions

import (
	"cmp"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/projections"
	"github.com/flowvault/flowvault/projections/executions/query"
)

// MaxScan bounds the candidates (workflows or tasks) one search examines. A
// query no index narrows down to fewer candidates sees only the MaxScan
// newest ones: its totalHits counts matches among those.
const MaxScan = 100_000

// estimateLimit bounds the keys counted to compare indexes.
const estimateLimit = 2048

// WorkflowFields are the fields workflow queries and sorts may name.
var WorkflowFields = query.Schema{
	"workflowId": query.String, "workflowType": query.String, "version": query.Number, "status": query.String,
	"correlationId": query.String, "priority": query.Number, "createdBy": query.String,
	"parentWorkflowId": query.String, "idempotencyKey": query.String, "reasonForIncompletion": query.String,
	"startTime": query.Time, "updateTime": query.Time, "endTime": query.Time, "executionTime": query.Number,
}

// field is the query.Doc of a summary: its values as Conductor's
// WorkflowSummary indexes them, "" for a text it leaves out (no
// correlation id) and 0 for a time it does (no end time).
func (s *Summary) field(name string) any {
	switch name {
	case "workflowId":
		return s.ID
	case "workflowType":
		return s.Name
	case "version":
		return int64(s.Version)
	case "status":
		return s.Status
	case "correlationId":
		return s.CorrelationID
	case "priority":
		return int64(s.Priority)
	case "createdBy":
		return s.CreatedBy
	case "parentWorkflowId":
		return s.ParentWorkflowID
	case "idempotencyKey":
		return s.IdempotencyKey
	case "reasonForIncompletion":
		return s.Reason
	case "startTime":
		return s.StartTime
	case "updateTime":
		return s.UpdateTime
	case "endTime":
		return s.EndTime
	case "executionTime": // as WorkflowSummary has it: 0 until the workflow ends
		if s.EndTime == 0 {
			return int64(0)
		}
		return s.EndTime - s.StartTime
	}
	return nil
}

// wfHit is a workflow that matched.
type wfHit struct {
	id    string
	start int64
	sum   *Summary // when the search read it
}

// SearchWorkflows returns the number of workflows that match s and the
// page of them s selects. Removed workflows are not found; archived ones
// are. Malformed queries and sorts are fault.ErrInvalid.
func (r *Reader) SearchWorkflows(ctx context.Context, s query.Search) (int, []*engine.Workflow, error) {
	hits, err := r.workflowHits(ctx, s)
	if err != nil {
		return 0, nil, err
	}
	page := pageOf(hits, s.Start, s.Size)
	out := make([]*engine.Workflow, 0, len(page))
	for _, h := range page {
		w, err := r.Workflow(ctx, h.id)
		if errors.Is(err, fault.ErrNotFound) {
			continue // removed since
		}
		if err != nil {
			return 0, nil, err
		}
		out = append(out, w)
	}
	return len(hits), out, nil
}

// SearchWorkflowIDs returns the ids of every workflow that matches s (up
// to MaxScan), in s's order.
func (r *Reader) SearchWorkflowIDs(ctx context.Context, s query.Search) ([]string, error) {
	hits, err := r.workflowHits(ctx, s)
	if err != nil {
		return nil, err
	}
	ids := make([]string, len(hits))
	for i, h := range hits {
		ids[i] = h.id
	}
	return ids, nil
}

func (r *Reader) workflowHits(ctx context.Context, s query.Search) ([]wfHit, error) {
	q, err := query.Parse(s.Query, WorkflowFields)
	if err != nil {
		return nil, err
	}
	keys, err := query.ParseSort(s.Sort, WorkflowFields)
	if err != nil {
		return nil, err
	}
	ft := query.ParseFreeText(s.FreeText)
	// One snapshot: a workflow whose status changes between the scans of
	// two index values would be found by both, or by neither.
	r, release, err := r.snapshot()
	if err != nil {
		return nil, err
	}
	defer release()
	src := r.planWorkflows(q)
	byStart := len(keys) == 0 || (len(keys) == 1 && keys[0].Field == "startTime")
	needSummary := !src.covered || !byStart || s.Visible != nil
	var hits []wfHit
	var ferr error
	err = src.each(r, func(id string, start int64, _ []byte) bool {
		if ctx.Err() != nil {
			ferr = ctx.Err()
			return false
		}
		h := wfHit{id: id, start: start}
		if needSummary {
			sum, err := r.summary(id)
			if errors.Is(err, fault.ErrNotFound) {
				return true
			}
			if err != nil {
				ferr = err
				return false
			}
			if !q.Match(sum.field) || s.Visible != nil && !s.Visible(sum.Name, sum.CreatedBy) {
				return true
			}
			h.sum = sum
			if src.ids != nil {
				h.start = sum.StartTime // listed ids come without an index time
			}
		}
		if !ft.All() {
			ok, err := r.freeTextWorkflow(ctx, id, ft)
			if err != nil || !ok {
				ferr = err
				return err == nil
			}
		}
		hits = append(hits, h)
		return true
	})
	if err == nil {
		err = ferr
	}
	if err != nil {
		return nil, err
	}
	if byStart {
		sortByTime(hits, len(keys) == 0 || keys[0].Desc, func(h wfHit) (int64, string) { return h.start, h.id })
	} else {
		// Ties fall back to the default order, newest first: the order
		// candidates come in (one index value after another) would make
		// a page depend on how the query was written.
		keys = append(keys, query.SortKey{Field: "startTime", Kind: query.Time, Desc: true},
			query.SortKey{Field: "workflowId", Kind: query.String, Desc: true})
		slices.SortFunc(hits, func(a, b wfHit) int { return query.Compare(keys, a.sum.field, b.sum.field) })
	}
	return hits, nil
}

func (r *Reader) freeTextWorkflow(ctx context.Context, id string, ft query.FreeText) (bool, error) {
	// The head: free text matches none of the tasks, which may be
	// thousands, of each of up to MaxScan workflows.
	w, err := r.WorkflowHead(ctx, id)
	if errors.Is(err, fault.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	// Match the masked view: a search must not tell whether a secret value
	// appears in a workflow.
	view := w.Conductor(false)
	return ft.Match(w.ID, w.Name, w.CorrelationID, searchable(view.Input), searchable(view.Output)), nil
}

// searchable is v's JSON as free text is matched against: without the
// escapes json.Marshal writes for HTML (`<` as \u003c), which text
// holding <, > or & would never match.
func searchable(v any) string {
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
	return strings.TrimSuffix(b.String(), "\n")
}

func (r *Reader) summary(id string) (*Summary, error) {
	v, err := r.r.Get([]byte(prefixSummary + eventlog.Token(id)))
	if errors.Is(err, projections.ErrNotFound) {
		return nil, fault.NotFound("workflow %s not found", id)
	}
	if err != nil {
		return nil, err
	}
	var s Summary
	if err := msgpack.Unmarshal(v, &s); err != nil {
		return nil, fmt.Errorf("stored summary %s: %w", id, err)
	}
	return &s, nil
}

// source is where a search finds its candidates: listed ids, or index
// prefixes followed by a big-endian time, scanned within [lo, hi].
type source struct {
	ids []string
	// tasks are the tasks the query names by id, of workflows ids, read
	// alone (see taskCandidates).
	tasks    []taskHit
	prefixes [][]byte
	lo, hi   int64
	// covered is true when every candidate matches the query: the index
	// and the time range express all of it.
	covered bool
	// taskIndex is true for the task status index, whose values are
	// workflow ids.
	taskIndex bool
}

// each calls fn with every candidate (id, index time and index value) until fn returns
// false or MaxScan candidates were seen. Several prefixes are scanned one
// after the other: callers sort.
func (s *source) each(r *Reader, fn func(id string, at int64, value []byte) bool) error {
	if s.ids != nil {
		for _, id := range s.ids {
			if !fn(id, 0, nil) {
				return nil
			}
		}
		return nil
	}
	n := 0
	for _, p := range s.prefixes {
		stop := false
		err := r.r.ScanRange(timeBound(p, s.lo), timeBound(p, s.hi+1), true, func(key, value []byte) bool {
			k := key[len(p):]
			if len(k) < 8 {
				return true
			}
			n++
			if n > MaxScan || !fn(string(k[8:]), int64(binary.BigEndian.Uint64(k[:8])), value) {
				stop = true
				return false
			}
			return true
		})
		if err != nil || stop {
			return err
		}
	}
	return nil
}

// count counts the candidates of s up to limit.
func (s *source) count(r *Reader, limit int) int {
	if s.ids != nil {
		return len(s.ids)
	}
	n := 0
	for _, p := range s.prefixes {
		_ = r.r.ScanRange(timeBound(p, s.lo), timeBound(p, s.hi+1), false, func(_, _ []byte) bool {
			n++
			return n < limit
		})
		if n >= limit {
			break
		}
	}
	return n
}

func timeBound(prefix []byte, at int64) []byte {
	if at < 0 {
		at = 0
	}
	return binary.BigEndian.AppendUint64(slices.Clip(prefix), uint64(at))
}

// timeRange intersects the range conditions on field into [lo, hi] and
// reports which conjuncts it expressed.
func timeRange(conds []query.Cond, field string) (lo, hi int64, used []int) {
	lo, hi = 0, math.MaxInt64-1
	for i, c := range conds {
		if c.Field != field {
			continue
		}
		v := func(j int) int64 { return c.Values[j].(int64) }
		switch c.Op {
		case query.Gt:
			if v(0) == math.MaxInt64 {
				lo = math.MaxInt64 // nothing lies above
			} else {
				lo = max(lo, v(0)+1)
			}
		case query.Ge:
			lo = max(lo, v(0))
		case query.Lt:
			if v(0) == math.MinInt64 {
				hi = -1 // nothing lies below
			} else {
				hi = min(hi, v(0)-1)
			}
		case query.Le:
			hi = min(hi, v(0))
		case query.Eq:
			lo, hi = max(lo, v(0)), min(hi, v(0))
		case query.Between:
			lo, hi = max(lo, v(0)), min(hi, v(1))
		default:
			continue
		}
		used = append(used, i)
	}
	return lo, hi, used
}

// equalities returns the values of an = or IN conjunct on field, each
// once (a value listed twice would scan its index prefix, and find its
// hits, twice), and the conjunct's index in conds (-1 if there is none).
func equalities(conds []query.Cond, field string) ([]string, int) {
	for i, c := range conds {
		if c.Field == field && (c.Op == query.Eq || c.Op == query.In) {
			vals := make([]string, 0, len(c.Values))
			seen := make(map[string]bool, len(c.Values))
			for _, v := range c.Values {
				if s := v.(string); !seen[s] {
					seen[s] = true
					vals = append(vals, s)
				}
			}
			return vals, i
		}
	}
	return nil, -1
}

// planWorkflows picks the index with the fewest candidates for q.
func (r *Reader) planWorkflows(q *query.Query) *source {
	conds := q.Conjuncts()
	lo, hi, rangeUsed := timeRange(conds, "startTime")
	if ids, _ := equalities(conds, "workflowId"); ids != nil {
		return &source{ids: ids}
	}
	best := &source{prefixes: [][]byte{[]byte(prefixByStart)}, lo: lo, hi: hi}
	best.covered = q.Conjunctive() && len(rangeUsed) == len(conds)
	bestN := -1
	for _, ix := range []struct{ field, prefix string }{
		{"correlationId", prefixByCorr}, {"workflowType", prefixByName}, {"status", prefixByStatus},
	} {
		vals, at := equalities(conds, ix.field)
		if at < 0 {
			continue
		}
		s := &source{lo: lo, hi: hi}
		for _, v := range vals {
			s.prefixes = append(s.prefixes, valuePrefix(ix.prefix, v))
		}
		s.covered = q.Conjunctive() && len(rangeUsed)+1 == len(conds)
		if n := s.count(r, estimateLimit); bestN < 0 || n < bestN {
			best, bestN = s, n
		}
	}
	return best
}

func pageOf[T any](hits []T, start, size int) []T {
	if start >= len(hits) || size <= 0 {
		return nil
	}
	return hits[start:min(len(hits), start+size)]
}

// sortByTime orders hits by an index time, ties by id.
func sortByTime[T any](hits []T, desc bool, key func(T) (int64, string)) {
	slices.SortStableFunc(hits, func(a, b T) int {
		at, aid := key(a)
		bt, bid := key(b)
		c := cmp.Or(cmp.Compare(at, bt), cmp.Compare(aid, bid))
		if desc {
			return -c
		}
		return c
	})
}

// Correlated returns the workflows with a correlation id, oldest first,
// removed and archived ones excluded; keep, when set, chooses among them
// by their summaries before any is read whole.
func (r *Reader) Correlated(ctx context.Context, correlationID string, keep func(name, createdBy, status string) bool) ([]*engine.Workflow, error) {
	src := &source{prefixes: [][]byte{valuePrefix(prefixByCorr, correlationID)}, hi: math.MaxInt64 - 1}
	var ids []string
	if err := src.each(r, func(id string, _ int64, _ []byte) bool { ids = append(ids, id); return true }); err != nil {
		return nil, err
	}
	slices.Reverse(ids)
	out := make([]*engine.Workflow, 0, len(ids))
	for _, id := range ids {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		// The summary first: a correlation id thousands of workflows
		// share is cheap to look up for one name or one caller's.
		if keep != nil {
			sum, err := r.summary(id)
			if errors.Is(err, fault.ErrNotFound) {
				continue
			}
			if err != nil {
				return nil, err
			}
			if !keep(sum.Name, sum.CreatedBy, sum.Status) {
				continue
			}
		}
		w, err := r.Workflow(ctx, id)
		if errors.Is(err, fault.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if !w.Removed {
			out = append(out, w)
		}
	}
	return out, nil
}
