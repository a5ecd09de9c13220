package engine

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"slices"
	"strconv"
	"strings"

	"github.com/flowvault/flowvault/masking"
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// Task output caching (Orkes's cacheConfig). A task whose configuration
// caches its output, and whose key names a cached output of the same task
// name, completes when it is scheduled, with that output, and runs
// nowhere; one that completes otherwise has its output cached
// (CacheOutput) for ttlInSecond. The lookup is Input.CachedOutput, which
// the executor answers from the cache it shares with the other engines;
// the output it answered is recorded in the task's record, so that a
// replay decides the same.
//
// What never goes into the cache, or its keys: a secret. A key that would
// hold a value resolved only at hand-off (${workflow.secrets.…} in the
// input it names) or a sealed value is no key, and the task runs as
// without caching; an output with _secrets or _masked is not cached; what
// is cached has been through the workflow's redaction (guard). A key also
// names who the workflow runs as: a cached output never reaches a
// workflow of other principals, whose task would have read other data.

// CacheOutput stores a completed task's output under Key until ExpiresAt
// (Unix ms). It names the task whose output it is: the UncacheOutput of
// a later decision that finds one of its values secret may be performed
// first, and find nothing to remove, so the executor reads the workflow
// once it has stored the output and removes it again if OutputMasked;
// and as neither effect is recorded, a hit reads it too, before the
// output is served.
type CacheOutput struct {
	Key        string
	Output     map[string]any
	ExpiresAt  int64
	WorkflowID string
	TaskID     string
}

func (CacheOutput) effectName() string { return "cache_output" }

// UncacheOutput removes the output cached under Key. The executor
// performs it before its decision is appended as well as after: a hit
// reads the workflow that cached the output, not those of the tasks it
// completed, one of which may be the decision's. Neither is recorded:
// recovery performs the purges of every output a workflow masks again
// (Effects), and so does the workflow's compaction. Required: the
// decision is not appended unless the purge before it succeeded; the
// compaction's, which nothing performs again once it is recorded, and
// which is tried again until it is.
type UncacheOutput struct {
	Key      string
	Required bool
}

func (UncacheOutput) effectName() string { return "uncache_output" }

// UncacheTasks removes from the cache the outputs that the tasks TaskIDs
// of workflow WorkflowID stored, whatever their keys: those of a workflow
// whose recorded definition does not parse, which holds their
// cacheConfig, cannot be keyed, but for the tasks that had completed when
// an upgrade brought that definition in (Task.KeysKept). Each entry names
// the task that stored it, which the executor looks for among them: a
// read of every entry. Required as for UncacheOutput.
type UncacheTasks struct {
	WorkflowID string
	TaskIDs    []string
	Required   bool
}

func (UncacheTasks) effectName() string { return "uncache_tasks" }

// Uncache returns the effects that remove from the cache the outputs of
// w's tasks in which masked marks a value: it was found to be secret once
// the output was cached (a later task passed it into a _secrets block),
// and the cache, shared by every workflow the same principals run, would
// hold it in plain text, hand it to the next task with the key as plain
// data, and keep it past the workflow's compaction. A task completed from
// the cache has its output under the key too. A key names who the
// workflow ran as when the task completed, or was completed from the
// cache, which may be fewer than it runs as now: the key of each is
// purged. It is of the definition the task completed under, whose key an
// upgrade may have changed since: that one is purged too (Task.CacheKeys).
// The guard adds them to the decision that records masked: it
// appends most ValuesMasked itself, once the engine has decided.
func Uncache(w *Workflow, masked *schemas.ValuesMasked) []Effect {
	if w == nil || masked == nil {
		return nil
	}
	return uncache(w, masked.Paths, false)
}

// UncacheServed returns the purges of the output served, a task of w
// completed from the cache as the decision scheduled it, was completed
// with, Required, for a decision that completed it so and records its
// output redacted: a value of it is one the decision seals, or one w
// knows to be secret. w then masks nothing there (no ValuesMasked, which
// Uncache reads, and recovery and the compaction after it), and the entry
// names the workflow that cached it, which masks nothing either: a hit
// would serve it. Nothing performs the purge again once the decision is
// recorded, which waits for it. The key is made of served's input, which
// the hit was keyed by: w may hold it redacted (the key's input is a
// value the decision seals too), which keys no entry.
func UncacheServed(w *Workflow, served *schemas.TaskScheduled) []Effect {
	if w == nil {
		return nil
	}
	i := w.taskIndex(served.TaskID)
	if i < 0 {
		return nil
	}
	// A copy of w's task list alone: Clone would take w's task index
	// from it.
	c, t := *w, *w.Tasks[i]
	t.Input = served.Input
	c.Tasks = slices.Clone(w.Tasks)
	c.Tasks[i] = &t
	return uncache(&c, []string{"task/" + served.TaskID + "/output"}, true)
}

// uncache returns the purges of the cached outputs of w's tasks in which
// paths mark a value, each key once, and those of the tasks that cannot
// be keyed without w's definition, which does not parse, by task: a task
// whose keys the upgrade onto that definition kept is keyed by them.
func uncache(w *Workflow, paths []string, required bool) []Effect {
	var (
		out     []Effect
		p       *plan
		parsed  bool
		unkeyed []string
	)
	for _, path := range paths {
		id, ok := outputPathOf(path)
		if !ok {
			continue
		}
		t := w.task(id)
		if t == nil {
			continue
		}
		if !parsed {
			// Only for a workflow that masks an output: most mask none.
			// One whose definition does not parse (an earlier version's
			// record, a damaged one) leaves p nil: the tasks that carry
			// their own configuration (a dynamic fork's) can still be
			// keyed, the others not, and their outputs must not stay in
			// the cache in plain text until they expire either.
			p, _ = w.planFor()
			parsed = true
		}
		wt := p.config(t)
		if wt == nil && p == nil && !t.KeysKept && !slices.Contains(unkeyed, t.ID) {
			unkeyed = append(unkeyed, t.ID)
		}
		// The key of the definition it runs now, and of those it
		// completed under before an upgrade changed it.
		configured := t.CacheKeys
		if wt != nil && cachesOutput(wt, t.Type) {
			configured = slices.Concat([]string{wt.CacheConfig.Key}, t.CacheKeys)
		}
		for _, c := range configured {
			key, ok := substituteInput(c, t.Input)
			if !ok {
				continue
			}
			// Who a workflow runs as only grows (an operator's result or
			// variables, a rerun with new input): who it ran as then is a
			// beginning of w.Principals().
			principals := w.Principals()
			for n := len(principals); n > 0; n-- {
				if u := (UncacheOutput{Key: hashKey(t.Name, key, principals[:n]), Required: required}); !slices.Contains(out, Effect(u)) {
					out = append(out, u)
				}
			}
		}
	}
	if len(unkeyed) > 0 {
		out = append(out, UncacheTasks{WorkflowID: w.ID, TaskIDs: unkeyed, Required: required})
	}
	return out
}

// keepCacheKeys keeps on each task w completed under its definition the
// cacheConfig key that definition gives it, where next, the one an
// upgrade moves w to, gives it another key or none: the output was cached,
// or served from the cache, under the key of then, which uncache purges
// too. A task served from the cache has its entry name the workflow that
// cached it, which masks nothing: a hit reads that workflow, and would
// serve what this one found secret. Where next does not parse, each task
// completed then is marked KeysKept: every key it was cached, or served,
// under is known without a definition, and its purge needs no read of
// every cache entry; one that completes after, under a definition only
// an earlier version read, is not. A definition w holds that does not
// parse keeps nothing: uncache keys such a workflow's tasks by their own
// configuration alone.
func keepCacheKeys(w *Workflow, next []byte) {
	before, err := w.planFor()
	if err != nil {
		return
	}
	after, _ := plans.get(next)
	for i, t := range w.Tasks {
		if t.Status != conductor.TaskCompleted || len(t.Config) > 0 { // a dynamic task carries its own configuration
			continue
		}
		var keep string
		if was := before.config(t); was != nil && cachesOutput(was, t.Type) && !slices.Contains(t.CacheKeys, was.CacheConfig.Key) {
			if now := after.config(t); now == nil || !cachesOutput(now, t.Type) || now.CacheConfig.Key != was.CacheConfig.Key {
				keep = was.CacheConfig.Key
			}
		}
		if keep == "" && (after != nil || t.KeysKept) {
			continue
		}
		// Tasks are shared with earlier states: copy before changing.
		c := *t
		if keep != "" {
			c.CacheKeys = append(slices.Clip(t.CacheKeys), keep)
		}
		if after == nil {
			c.KeysKept = true
		}
		w.Tasks[i] = &c
	}
}

// OutputMasked reports whether w masks a value of the output of task
// taskID: a decision found it secret, and removed the output from the
// cache (Uncache).
func OutputMasked(w *Workflow, taskID string) bool {
	return slices.ContainsFunc(w.MaskedPaths, func(path string) bool {
		id, ok := outputPathOf(path)
		return ok && id == taskID
	})
}

// outputPathOf returns the task whose output a masked path names
// ("task/<id>/output", "task/<id>/output.<key>…").
func outputPathOf(path string) (taskID string, ok bool) {
	rest, ok := strings.CutPrefix(path, "task/")
	if !ok {
		return "", false
	}
	id, field, _ := strings.Cut(rest, "/")
	return id, field == "output" || strings.HasPrefix(field, "output.")
}

// cachesOutput reports whether wt caches the output of its runs: a task
// handed to workers, or an HTTP or HTTP_POLL call, with a key and a time
// to live.
func cachesOutput(wt *conductor.WorkflowTask, taskType string) bool {
	c := wt.CacheConfig
	if c == nil || c.Key == "" || c.TTLInSecond <= 0 {
		return false
	}
	return !isSystemType(taskType) || taskType == conductor.TaskTypeHTTP || taskType == conductor.TaskTypeHTTPPoll
}

// cacheKey is the key of the output of task name with input in w: the
// name, the principals w runs as and the configured key with ${…} replaced
// by the input parameters it names, hashed. False when the key would hold
// a secret (see above).
func cacheKey(w *Workflow, wt *conductor.WorkflowTask, name string, input map[string]any) (string, bool) {
	key, ok := substituteInput(wt.CacheConfig.Key, input)
	if !ok {
		return "", false
	}
	return hashKey(name, key, w.Principals()), true
}

// hashKey is the cache key of task name's configured key, key with its
// input substituted, for a workflow run as principals.
func hashKey(name, key string, principals []string) string {
	h := sha256.New()
	for _, part := range append([]string{name, key}, principals...) {
		h.Write([]byte(strconv.Itoa(len(part))))
		h.Write([]byte{':'})
		h.Write([]byte(part))
	}
	return hex.EncodeToString(h.Sum(nil))
}

// substituteInput replaces each ${path} of tmpl by the input value path
// names ("url", "req.method", "ids[0]"): a string as it is, anything else
// as JSON, nothing for a path that names nothing. False when a value holds
// a deferred reference or a sealed value, or the path reaches under
// _secrets or _masked.
func substituteInput(tmpl string, input map[string]any) (string, bool) {
	var b strings.Builder
	for {
		start := strings.Index(tmpl, "${")
		if start < 0 {
			b.WriteString(tmpl)
			return b.String(), true
		}
		end := strings.Index(tmpl[start:], "}")
		if end < 0 {
			b.WriteString(tmpl)
			return b.String(), true
		}
		b.WriteString(tmpl[:start])
		path := tmpl[start+2 : start+end]
		tmpl = tmpl[start+end+1:]
		v, found := inputAt(input, path)
		if !found {
			continue
		}
		if masking.HasSealed(v) {
			return "", false
		}
		s, isString := v.(string)
		if !isString {
			js, err := json.Marshal(v)
			if err != nil {
				return "", false
			}
			s = string(js)
		}
		if strings.Contains(s, "${") {
			return "", false // resolved at hand-off: a secret, an environment value
		}
		b.WriteString(s)
	}
}

// inputAt follows a path of names and [index]es into input.
func inputAt(input map[string]any, path string) (any, bool) {
	var cur any = input
	for _, part := range strings.Split(strings.ReplaceAll(path, "[", ".["), ".") {
		if part == "" {
			continue
		}
		if idx, ok := strings.CutPrefix(part, "["); ok {
			i, err := strconv.Atoi(strings.TrimSuffix(idx, "]"))
			list, isList := cur.([]any)
			if err != nil || !isList || i < 0 || i >= len(list) {
				return nil, false
			}
			cur = list[i]
			continue
		}
		m, isMap := cur.(map[string]any)
		if !isMap || masking.IsMaskedKey(part) {
			return nil, false
		}
		if cur, isMap = m[part]; !isMap {
			return nil, false
		}
	}
	return cur, true
}

// fromCache completes ev, a task being scheduled, with a cached output if
// its configuration caches and the cache has one for its key.
func (d *decision) fromCache(wt *conductor.WorkflowTask, ev *schemas.TaskScheduled) {
	if d.in.CachedOutput == nil || !cachesOutput(wt, ev.Type) {
		return
	}
	key, ok := cacheKey(d.w, wt, ev.Name, ev.Input)
	if !ok {
		return
	}
	if out, hit := d.in.CachedOutput(key); hit {
		ev.Status, ev.Output = conductor.TaskCompleted, out
	}
}

// cache caches the output of t, which completed, if its configuration
// says so.
func (d *decision) cache(t *Task, output map[string]any) {
	wt := d.plan.config(t)
	if wt == nil || !cachesOutput(wt, t.Type) || masking.HoldsMaskedKey(output) {
		return
	}
	if key, ok := cacheKey(d.w, wt, t.Name, t.Input); ok {
		d.effect(CacheOutput{Key: key, Output: output, ExpiresAt: afterSeconds(d.now, int64(wt.CacheConfig.TTLInSecond)),
			WorkflowID: d.w.ID, TaskID: t.ID})
	}
}
