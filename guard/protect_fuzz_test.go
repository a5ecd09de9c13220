package guard

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"maps"
	"math/rand/v2"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/executor"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/internal/lifecyclegen"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/masking"
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/flowvault/flowvault/secrets"
)

// FuzzProtectLifecycles drives one workflow through a lifecycle of the
// engine fuzzers' (internal/lifecyclegen), its definition given secret
// bearing parts: a _secrets and a _masked block and a maskedFields field in
// its input, SIMPLE tasks whose inputParameters take ${workflow.secrets.s0}
// or s1 (whole or within text) or copy workflow input keys p and q into a
// _secrets or _masked block, SET_VARIABLEs that copy p into a _secrets
// block. Each hand-off is prepared by the guard (Prepare, with a secret
// source holding two random values) and recorded on the take, as the
// executor does; workers' results carry new _secrets values now and then,
// and echo values the guard knows in their output, reason and log lines,
// as do operators' variables. Every decision is protected, folded and
// encoded as the executor appends it (schemas.Default).
//
// The oracle. K is the set of values the guard was given for the workflow
// in a recorded decision: the leaves of its input's _secrets and _masked
// blocks and maskedFields field, the input keys its definition copies only
// into _secrets and _masked blocks (sealed at the start, see
// engine.InputSecrecy), the secrets a recorded take resolved, and the
// _secrets leaves of a recorded result. Every value is random, 32 to 48
// characters, so never text of the definition, which redaction leaves
// alone. No encoded event of any record holds, for any value of K or of
// the decision's own _secrets leaves, the value itself, its JSON escapes
// (Go's, with and without HTML escaping, and escaped twice), its URL
// escapes (query and path) or the base64 characters that encode its bytes
// alone at any offset: the forms redaction documents. Echoes are planted
// only of values in K or sealed by the same result, and only in those
// forms (none encoded twice another way than JSON in JSON, nor hex, nor
// line-wrapped base64). When the workflow has ended, it is now and then
// compacted and its secrets key destroyed as the compactor does; then no
// value sealed under _secrets in any record opens any more, and the run
// ends.
func FuzzProtectLifecycles(f *testing.F) {
	fuzzProtect(f, false)
}

// FuzzProtectEffects drives FuzzProtectLifecycles's lifecycles with what
// reaches other workflows and the refusals besides. Its definitions also
// give SUB_WORKFLOW tasks input (a secret reference, the workflow input
// copied into _secrets or _masked blocks, a task's whole output, a text
// made of a task's _secrets output), SIMPLE tasks a cacheConfig, the
// workflow a failure workflow, and end now and then in a DYNAMIC task
// named by a worker's output, which a worker may give a value the guard
// knows: the guard refuses the decision that would name a task with it,
// and the executor records what executor.RecordInstead says instead, as
// this target does. Late and repeated results and news of ended children
// (lifecyclegen's ignored moves) are delivered with echoes too, and an
// ended workflow's run goes on after its compaction (a restart runs it
// again, under a new key): from then on K no longer holds the values
// sealed under the destroyed _secrets key alone, which redaction can no
// longer look for (README, Compaction: a task log line is refused for
// that reason) and which the workflow's tasks get as "***".
//
// The oracle adds to FuzzProtectLifecycles's. A refusal's text holds no
// form of a value of K. Each effect of a recorded decision is carried as
// the executor carries it: a child's reason to end and the sealed values
// a child is told to look for hold none, nor does a cached output as
// JSON (an output with _secrets or _masked is not cached, what
// is cached is redacted); a started workflow's name, definition,
// correlation id, domains, idempotency key and reason for refusal, which
// the child shows in plain text, hold none either; its input goes through
// the child's preparation when it holds references or sealed values (the
// executor's ChildPreparer), and the child's start is decided and
// protected (a one-task definition that reads nothing of its input, so
// that only _secrets and _masked blocks are sealed): no encoded event of
// it holds a form of K's values. That is the README's promise for a
// child: what the parent's input passes under _secrets or _masked the
// child seals, what the parent resolved or sealed reaches it sealed or
// "***", never plain.
func FuzzProtectEffects(f *testing.F) {
	fuzzProtect(f, true)
}

// fuzzProtect runs the lifecycles of either target, full for
// FuzzProtectEffects's.
func fuzzProtect(f *testing.F, full bool) {
	l := testutil.OpenLog(f, "")
	ctx := context.Background()
	keys, err := secrets.OpenKeys(ctx, l.JetStream(), secrets.GenerateMasterKey(), secrets.KeysOptions{Logger: testutil.Logger(f)})
	if err != nil {
		f.Fatal(err)
	}
	for _, seed := range [][]byte{
		{},
		[]byte("echo secrets back through results"),
		bytes.Repeat([]byte{1, 9, 4, 7, 0, 8, 2, 3}, 24),
		bytes.Repeat([]byte{2, 3, 1, 13, 0, 2, 5, 14, 1, 15, 6}, 16),
		bytes.Repeat([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17}, 8),
		bytes.Repeat([]byte{3, 3, 0, 1, 4, 2, 0, 0, 5, 1}, 20),
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		tctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		runProtect(t, tctx, keys, data, full)
	})
}

// protectRuns numbers the runs: a workflow's _masked key is named after
// it, and one run's compaction must not meet another's keys.
var protectRuns atomic.Int64

// protectRun is one fuzzed workflow and what the oracle knows of it.
type protectRun struct {
	t    *testing.T
	ctx  context.Context
	keys *secrets.Keys
	g    *Guard
	src  *lifecyclegen.Src
	rng  *rand.Rand
	drv  *lifecyclegen.Driver
	id   string
	w    *engine.Workflow
	now  time.Time
	seq  uint64
	// sources are the secret source's values by name.
	sources map[string]string
	// known is K; fresh are the _secrets leaves of the trigger being
	// decided, known once its result is recorded.
	known, fresh []string
	// sealed are the values sealed under _secrets in any record.
	sealed []*masking.Sealed
	trail  []string
	// secretsOnly are the values of K sealed under the workflow's _secrets
	// key alone: compaction destroys them.
	secretsOnly []string
	// full runs FuzzProtectEffects's lifecycles; simples are the SIMPLE
	// tasks' reference names met so far in the definition.
	full    bool
	simples []string
}

func runProtect(t *testing.T, ctx context.Context, keys *secrets.Keys, data []byte, full bool) {
	h := fnv.New64a()
	h.Write(data)
	r := &protectRun{t: t, ctx: ctx, keys: keys, src: lifecyclegen.NewSrc(data), rng: rand.New(rand.NewPCG(h.Sum64(), 7)),
		id: fmt.Sprintf("00000000-0000-4000-9000-%012d", protectRuns.Add(1)), now: time.UnixMilli(1_800_000_000_000).UTC(), full: full}
	r.sources = map[string]string{"s0": r.secret(), "s1": r.secret()}
	src := make(fakeSecrets, len(r.sources))
	for k, v := range r.sources {
		src[k] = v
	}
	r.g = New(Config{Keys: keys, Authz: allowAll{}, Secrets: src})
	r.drv = lifecyclegen.NewDriver(r.src)
	r.start()
	for i := 0; i < 80 && !r.src.Done() && r.w != nil; i++ {
		if r.w.Terminal() && !r.w.Compacted && r.src.N(4) == 0 {
			r.compact()
			if !r.full {
				return
			}
			continue
		}
		mv := r.drv.Next(r.w, r.now)
		r.now = mv.Now
		if mv.Trigger == nil || mv.Ignored != "" && !r.full {
			continue
		}
		r.decide(r.plant(mv.Trigger))
	}
}

// secretChars are what a planted value is made of: letters and digits,
// and what JSON, URLs, HTML and base64 escape or cut at ('$' and braces
// left out: no planted value reads as a reference).
const secretChars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789" +
	"0123456789abcdefghijklmnop \"\\/<>&+=%?#!'()*:;,.-_~"

// secret returns a random value of 32 to 48 characters, now and then with
// a non-ASCII one.
func (r *protectRun) secret() string {
	var b strings.Builder
	for range 32 + r.rng.IntN(17) {
		b.WriteByte(secretChars[r.rng.IntN(len(secretChars))])
	}
	if r.rng.IntN(4) == 0 {
		b.WriteString("é")
	}
	return b.String()
}

// start decides the workflow's start: the grammar's definition with
// secret-bearing parts, and an input holding what the definition seals.
func (r *protectRun) start() {
	js := lifecyclegen.Def(r.src, lifecyclegen.Grammar{ExclusiveJoins: r.src.N(2) == 0})
	var doc map[string]any
	if err := json.Unmarshal([]byte(js), &doc); err != nil {
		r.t.Fatal(err)
	}
	r.addSecretParts(doc["tasks"])
	input := map[string]any{"c": []string{"a", "b", "z"}[r.src.N(3)]}
	var planted []string
	plant := func(v string) any {
		planted = append(planted, v)
		return v
	}
	if r.src.N(2) == 0 {
		input["_secrets"] = map[string]any{"k": r.inSecrets(plant(r.secret())), "n": map[string]any{"deep": []any{r.inSecrets(plant(r.secret()))}}}
	}
	if r.src.N(2) == 0 {
		input["_masked"] = map[string]any{"k": plant(r.secret())}
	}
	if r.src.N(3) == 0 {
		doc["maskedFields"] = []any{"mf"}
		input["mf"] = plant(r.secret())
	}
	if r.full {
		r.addEffects(doc)
	}
	js2, err := json.Marshal(doc)
	if err != nil {
		r.t.Fatal(err)
	}
	for _, k := range []string{"p", "q"} {
		if strings.Contains(string(js2), "${workflow.input."+k+"}") {
			input[k] = plant(r.secret())
			if k == "p" {
				r.inSecrets(input[k])
			}
		}
	}
	var def conductor.WorkflowDef
	if err := conductor.Unmarshal(js2, &def); err != nil {
		r.t.Fatal(err)
	}
	if err := engine.ValidateWorkflowDef(&def); err != nil {
		r.t.Fatalf("the definition is invalid: %v\n%s", err, js2)
	}
	r.fresh = planted
	r.trail = append(r.trail, "definition "+string(js2))
	r.decide(engine.Start{WorkflowID: r.id, Def: &def, CreatedBy: "app:a",
		Request: conductor.StartWorkflowRequest{Name: "fz", Input: input}})
	if r.w != nil {
		r.known = append(r.known, planted...)
	}
	r.fresh = nil
}

// inSecrets notes that v goes under the workflow's _secrets key alone.
func (r *protectRun) inSecrets(v any) any {
	r.secretsOnly = append(r.secretsOnly, v.(string))
	return v
}

// addSecretParts gives the grammar's SIMPLE tasks and SET_VARIABLEs, in
// every list of tasks, inputParameters that reach secrets.
func (r *protectRun) addSecretParts(v any) {
	switch x := v.(type) {
	case []any:
		for _, e := range x {
			r.addSecretParts(e)
		}
	case map[string]any:
		for _, k := range []string{"forkTasks", "defaultCase", "loopOver"} {
			r.addSecretParts(x[k])
		}
		if cases, ok := x["decisionCases"].(map[string]any); ok {
			for _, k := range slices.Sorted(maps.Keys(cases)) {
				r.addSecretParts(cases[k])
			}
		}
		in, _ := x["inputParameters"].(map[string]any)
		if in == nil {
			in = map[string]any{}
		}
		switch x["type"] {
		case conductor.TaskTypeSimple:
			name := fmt.Sprintf("s%d", r.src.N(2))
			switch r.src.N(5) {
			case 1:
				in["tok"] = "${workflow.secrets." + name + "}"
			case 2:
				in["auth"] = "Bearer ${workflow.secrets." + name + "}"
			case 3:
				in["_secrets"] = map[string]any{"x": "${workflow.input.p}"}
			case 4:
				in["_masked"] = map[string]any{"y": "${workflow.input.q}"}
			}
			if r.full {
				if r.src.N(4) == 0 {
					x["cacheConfig"] = map[string]any{"key": "fixed", "ttlInSecond": 60}
				}
				r.simples = append(r.simples, x["taskReferenceName"].(string))
			}
		case conductor.TaskTypeSetVariable:
			if r.src.N(3) == 0 {
				in["_secrets"] = map[string]any{"p": "${workflow.input.p}"}
			}
		case conductor.TaskTypeSubWorkflow:
			if r.full {
				r.childInput(in)
			}
		}
		if len(in) > 0 {
			x["inputParameters"] = in
		}
	}
}

// childInput gives a SUB_WORKFLOW's input what may carry secrets to the
// child.
func (r *protectRun) childInput(in map[string]any) {
	for range 1 + r.src.N(2) {
		switch r.src.N(6) {
		case 1:
			in["tok"] = fmt.Sprintf("${workflow.secrets.s%d}", r.src.N(2))
		case 2:
			in["_secrets"] = map[string]any{"x": "${workflow.input.p}"}
		case 3:
			in["_masked"] = map[string]any{"y": "${workflow.input.q}"}
		case 4:
			if len(r.simples) > 0 {
				in["prev"] = "${" + r.simples[r.src.N(len(r.simples))] + ".output}"
			}
		case 5:
			if len(r.simples) > 0 {
				in["auth"] = "Bearer ${" + r.simples[r.src.N(len(r.simples))] + ".output._secrets.session}"
			}
		}
	}
}

// addEffects gives the definition a failure workflow now and then, and
// ends it in a DYNAMIC task that a SIMPLE task's output names.
func (r *protectRun) addEffects(doc map[string]any) {
	if r.src.N(3) == 0 {
		doc["failureWorkflow"] = "onfail"
	}
	if len(r.simples) > 0 && r.src.N(3) == 0 {
		from := r.simples[r.src.N(len(r.simples))]
		doc["tasks"] = append(doc["tasks"].([]any), map[string]any{"name": "dynz", "taskReferenceName": "dynz", "type": conductor.TaskTypeDynamic,
			"dynamicTaskNameParam": "tn", "inputParameters": map[string]any{"tn": "${" + from + ".output.tn}"}})
	}
}

// plant rewrites a worker's result or an operator's variables to carry
// echoes of values the guard knows, and new _secrets values.
func (r *protectRun) plant(trig engine.Trigger) engine.Trigger {
	switch x := trig.(type) {
	case engine.Result:
		if t := r.w.TaskByID(x.Result.TaskID); x.HandBack || t == nil || !t.IsWorkerTask() && t.Type != conductor.TaskTypeHTTP {
			return trig // a loop's verdict, a WAIT's completion
		}
		res := x.Result
		out := map[string]any{}
		for k, v := range res.OutputData {
			out[k] = v
		}
		if r.src.N(3) == 0 {
			v := r.secret()
			r.fresh = append(r.fresh, v)
			r.inSecrets(v)
			out["_secrets"] = map[string]any{"session": v}
		}
		if r.full && r.src.N(3) == 0 {
			// The name of the DYNAMIC task that reads it.
			out["tn"] = "dynwork"
			if vals := slices.Concat(r.known, r.fresh); len(vals) > 0 && r.src.N(2) == 0 {
				out["tn"] = r.form(vals[r.src.N(len(vals))])
			}
		}
		for range r.src.N(4) {
			vals := slices.Concat(r.known, r.fresh)
			if len(vals) == 0 {
				break
			}
			echo := r.form(vals[r.src.N(len(vals))])
			switch r.src.N(6) {
			case 0:
				out["e"] = echo
			case 1:
				out["nested"] = map[string]any{"list": []any{1, echo}, "m": map[string]any{"k": echo}}
			case 2:
				out[echo] = map[string]any{"under": "a key"}
			case 3:
				res.ReasonForIncompletion = "failed with " + echo
			default:
				res.Logs = append(res.Logs, conductor.TaskExecLog{Log: "worker says " + echo, TaskID: res.TaskID, CreatedTime: r.now.UnixMilli()})
			}
		}
		res.OutputData = out
		x.Result = res
		return x
	case engine.SetVariables:
		if len(r.known) > 0 && r.src.N(2) == 0 {
			vars := map[string]any{"op": r.form(r.known[r.src.N(len(r.known))])}
			for k, v := range x.Variables {
				vars[k] = v
			}
			x.Variables = vars
		}
		return x
	}
	return trig
}

// form returns v in one of the forms redaction documents, alone or within
// text.
func (r *protectRun) form(v string) string {
	switch r.src.N(9) {
	case 1:
		return "pre " + v + " post"
	case 2:
		js, _ := json.Marshal(map[string]any{"tok": v})
		return string(js)
	case 3:
		js, _ := json.Marshal(map[string]any{"tok": v})
		twice, _ := json.Marshal(string(js))
		return string(twice)
	case 4:
		return "https://x.invalid/cb?t=" + url.QueryEscape(v) + "&z=1"
	case 5:
		return "https://x.invalid/a/" + url.PathEscape(v) + "/b"
	case 6:
		return "Basic " + base64.StdEncoding.EncodeToString([]byte("user:"+v))
	case 7:
		return base64.StdEncoding.EncodeToString([]byte(v))
	case 8:
		return jsonEscape(v, false)
	}
	return v
}

// handOff prepares a take as the executor does, and returns it with its
// outcome and the values it resolved.
func (r *protectRun) handOff(take engine.Take) (engine.Take, []string) {
	t := r.w.TaskByIDDeciding(take.TaskID)
	if t == nil || t.Status != conductor.TaskScheduled {
		return take, nil
	}
	_, resolved, err := r.g.Prepare(r.ctx, r.w, t)
	take.HandOff = &engine.HandOff{Resolved: resolved}
	switch {
	case err == nil:
	case errors.Is(err, fault.ErrNotFound), errors.Is(err, fault.ErrForbidden), errors.Is(err, fault.ErrInvalid):
		take.HandOff.Error = err.Error()
	default:
		r.fatalf("prepare task %s: %v", t.Ref, err)
	}
	var values []string
	for _, ref := range resolved {
		if ref.Kind == "secret" && ref.Refused == "" {
			values = append(values, r.sources[ref.Name])
		}
	}
	return take, values
}

// decide decides trig, protects and records the decision, then what it
// left due at once (engine.Pending), as the executor does.
func (r *protectRun) decide(trig engine.Trigger) {
	r.t.Helper()
	defer func() { r.fresh = nil }()
	fellBack := false
	for range 100 {
		var resolved []string
		if take, ok := trig.(engine.Take); ok && r.w != nil {
			trig, resolved = r.handOff(take)
		}
		d, err := engine.Decide(engine.Input{State: r.w, Trigger: trig, Now: r.now})
		var df *engine.DeciderFault
		if errors.As(err, &df) {
			r.fatalf("%s: %v\n%s", engine.TriggerName(trig), err, df.Stack)
		}
		values := slices.Concat(r.known, r.fresh, resolved)
		if err != nil || len(d.Events) == 0 {
			r.trail = append(r.trail, fmt.Sprintf("%s: %v", engine.TriggerName(trig), err))
			if err == nil {
				// The executor performs a decision's effects unprotected
				// when it records nothing (recovery's starts again).
				r.checkEffects(d.Effects, values)
			}
			return
		}
		pd, err := r.g.Protect(r.ctx, r.w, d)
		if fault.Refused(err) {
			r.trail = append(r.trail, fmt.Sprintf("%s: refused: %v", engine.TriggerName(trig), err))
			r.search("the refusal of "+engine.TriggerName(trig), []byte(err.Error()), values)
			if !r.full || !errors.Is(err, fault.ErrSecretInName) {
				return
			}
			if trig = executor.RecordInstead(trig, err, fellBack); trig == nil {
				return
			}
			fellBack = true
			continue
		}
		if err != nil {
			r.fatalf("protect %s: %v", engine.TriggerName(trig), err)
		}
		state := d.State
		switch {
		case len(pd.Events) == len(d.Events) && &pd.Events[0] == &d.Events[0]:
		case pd.State != nil && pd.State != d.State:
			state = pd.State
		default:
			if state = r.w; state != nil {
				state = state.Clone()
			}
			for _, ev := range pd.Events {
				if state, err = engine.Apply(state, ev); err != nil {
					r.fatalf("fold the protected %T: %v", ev, err)
				}
			}
		}
		types := make([]string, len(pd.Events))
		for i, ev := range pd.Events {
			types[i] = ev.EventType()
		}
		r.trail = append(r.trail, fmt.Sprintf("%s at +%s: %v", engine.TriggerName(trig), r.now.Sub(time.UnixMilli(1_800_000_000_000)), types))
		r.check(pd.Events, values)
		r.checkEffects(pd.Effects, values)
		r.seq++
		state.Seq = r.seq
		r.g.Recorded(r.id, r.seq)
		r.w = state
		r.known = append(r.known, resolved...)
		if res, ok := trig.(engine.Result); ok && len(r.fresh) > 0 && recordsOutput(pd.Events, res.Result.TaskID) {
			r.known = append(r.known, r.fresh...)
			r.fresh = nil
		}
		if !engine.Pending(r.w) {
			return
		}
		trig = engine.Tick{}
	}
	r.fatalf("still pending after 100 ticks")
}

// recordsOutput reports whether events record an output of task id that
// holds a _secrets block.
func recordsOutput(events []schemas.Event, id string) bool {
	for _, ev := range events {
		if u, ok := ev.(*schemas.TaskUpdated); ok && u.TaskID == id && u.Output[masking.KeySecrets] != nil {
			return true
		}
	}
	return false
}

// check encodes events as the log stores them and fails on any form of
// values in one, and collects what they sealed under _secrets.
func (r *protectRun) check(events []schemas.Event, values []string) {
	r.t.Helper()
	for _, dec := range r.searchEvents(fmt.Sprintf("record %d", r.seq+1), events, values) {
		r.collectSealed(dec)
	}
}

// searchEvents fails on any form of values in the encoding of one of
// events, named after where, and returns them decoded.
func (r *protectRun) searchEvents(where string, events []schemas.Event, values []string) []schemas.Event {
	r.t.Helper()
	out := make([]schemas.Event, len(events))
	for i, ev := range events {
		env, err := schemas.Default.Encode(ev)
		if err != nil {
			r.fatalf("encode %T: %v", ev, err)
		}
		r.search(fmt.Sprintf("%s, event %d (%s)", where, i, ev.EventType()), env.Data, values, ev)
		if out[i], err = schemas.Default.Decode(env); err != nil {
			r.fatalf("decode %s: %v", ev.EventType(), err)
		}
	}
	return out
}

// search fails on any form of values in data, named after where; what
// follows is shown with the failure.
func (r *protectRun) search(where string, data []byte, values []string, what ...any) {
	r.t.Helper()
	for _, v := range values {
		for _, f := range secretForms(v) {
			if bytes.Contains(data, []byte(f)) {
				r.fatalf("%s holds %q, a form of %s:\n%+v", where, f, r.describe(v), what)
			}
		}
	}
}

// checkEffects carries each effect as the executor does and fails on any
// form of values in what it carries (see FuzzProtectEffects).
func (r *protectRun) checkEffects(effs []engine.Effect, values []string) {
	r.t.Helper()
	for _, eff := range effs {
		switch e := eff.(type) {
		case engine.CacheOutput:
			js, err := json.Marshal(e.Output)
			if err != nil {
				r.fatalf("cache output: %v", err)
			}
			r.search(fmt.Sprintf("record %d's cached output", r.seq+1), js, values, e)
		case engine.StartWorkflow:
			r.checkStart(e, values)
		case engine.TerminateWorkflow:
			// The child records the reason, and its redaction knows
			// nothing of its parent's values.
			r.search(fmt.Sprintf("record %d's reason to end %s", r.seq+1, e.WorkflowID), []byte(e.Reason), values, e)
		case engine.LookFor:
			js, err := json.Marshal(e)
			if err != nil {
				r.fatalf("look for: %v", err)
			}
			r.search(fmt.Sprintf("record %d's news for %s", r.seq+1, e.WorkflowID), js, values, e)
		}
	}
}

// kidDef is the definition of a workflow another one starts: one task
// that reads nothing of the input, which is therefore kept as given
// except for its _secrets and _masked blocks.
const kidDef = `{"name":%q,"version":1,"schemaVersion":2,"tasks":[{"name":"k1","taskReferenceName":"k1","type":"SIMPLE"}]}`

// checkStart starts the workflow e starts as the executor does: its
// input prepared when it holds references or sealed values, its start
// decided and protected.
func (r *protectRun) checkStart(e engine.StartWorkflow, values []string) {
	r.t.Helper()
	where := fmt.Sprintf("record %d's start of %s %s", r.seq+1, e.Name, e.WorkflowID)
	shown, err := json.Marshal([]any{e.Name, string(e.Def), e.CorrelationID, e.TaskToDomain, e.IdempotencyKey, e.Refused})
	if err != nil {
		r.fatalf("%s: %v", where, err)
	}
	r.search(where, shown, values, e)
	if e.Refused != "" {
		return
	}
	input, resolved := e.Input, []schemas.ResolvedRef(nil)
	if len(e.InputDeferred) > 0 || masking.HasSealed(e.Input) {
		in, refs, err := r.g.PrepareChild(r.ctx, e)
		switch {
		case err == nil:
			input, resolved = in, refs
		case errors.Is(err, fault.ErrNotFound), errors.Is(err, fault.ErrForbidden), errors.Is(err, fault.ErrInvalid):
			// The executor fails the starting task with this reason.
			r.search(where+": its preparation's refusal", []byte(err.Error()), values, e)
			return
		default:
			r.fatalf("%s: prepare: %v", where, err)
		}
	}
	defJS := e.Def
	if len(defJS) == 0 {
		defJS = fmt.Appendf(nil, kidDef, e.Name)
	}
	var def conductor.WorkflowDef
	if err := conductor.Unmarshal(defJS, &def); err != nil {
		r.fatalf("%s: %v", where, err)
	}
	d, err := engine.Decide(engine.Input{Now: r.now, Trigger: engine.Start{WorkflowID: e.WorkflowID, Def: &def, CreatedBy: e.CreatedBy,
		AlsoRunsAs: e.AlsoRunsAs, ParentWorkflowID: e.ParentWorkflowID, ParentWorkflowTaskID: e.ParentWorkflowTaskID, Depth: e.Depth,
		Resolved: resolved, Request: conductor.StartWorkflowRequest{Name: e.Name, Version: e.Version, Input: input,
			CorrelationID: e.CorrelationID, Priority: e.Priority, TaskToDomain: e.TaskToDomain,
			IdempotencyKey: e.IdempotencyKey, IdempotencyStrategy: e.IdempotencyStrategy}}})
	if err != nil {
		r.search(where+": its refusal", []byte(err.Error()), values, e)
		return
	}
	defer r.g.forget(e.WorkflowID)
	pd, err := r.g.Protect(r.ctx, nil, d)
	if fault.Refused(err) {
		r.search(where+": its protection's refusal", []byte(err.Error()), values, e)
		return
	}
	if err != nil {
		r.fatalf("%s: protect: %v", where, err)
	}
	r.searchEvents(where, pd.Events, values)
}

// collectSealed keeps the _secrets values an event's data holds.
func (r *protectRun) collectSealed(ev schemas.Event) {
	var data []any
	switch e := ev.(type) {
	case *schemas.WorkflowStarted:
		data = []any{e.Input}
	case *schemas.TaskScheduled:
		data = []any{e.Input, e.Output}
	case *schemas.TaskUpdated:
		data = []any{e.Output}
	case *schemas.VariablesUpdated:
		data = []any{e.Variables}
	case *schemas.WorkflowStatusChanged:
		data = []any{e.Output}
	}
	for _, d := range data {
		masking.Find(d, func(s *masking.Sealed) bool {
			if s.Kind == masking.KindSecrets {
				r.sealed = append(r.sealed, s)
			}
			return false
		})
	}
}

// compact compacts the ended workflow and destroys its secrets key, as
// the compactor does; nothing sealed under _secrets opens then.
func (r *protectRun) compact() {
	r.decide(engine.Compact{})
	if !r.w.SealsSecrets {
		return
	}
	if !r.w.Compacted {
		r.fatalf("an ended workflow that sealed secrets was not compacted")
	}
	if _, err := r.keys.DestroyKeys(r.ctx, []string{secretsKeyOf(r.w)}); err != nil {
		r.fatalf("destroy: %v", err)
	}
	open := r.g.opener(r.ctx, r.w)
	for _, s := range r.sealed {
		plain, err := open(s.Kind, s.Purpose, s.Ciphertext)
		if err != nil || string(plain) != `"`+masking.Mask+`"` {
			r.fatalf("a value sealed at %s under _secrets opens after compaction: %d bytes, %v", s.Purpose, len(plain), err)
		}
	}
	// A run again (a restart) seals under a new key. What the destroyed
	// one sealed is no longer known to redaction (a task log line is
	// refused for it, see Protect) nor to any of the workflow's tasks,
	// which get "***" for it: a worker that still echoes it (a session
	// it opened before) is not looked for.
	r.sealed = nil
	r.known = slices.DeleteFunc(r.known, func(v string) bool { return slices.Contains(r.secretsOnly, v) })
}

// secretForms are the forms of v no record may hold: as it is, its JSON
// escapes (Go's, with and without HTML escaping, and twice), its URL
// escapes, and the base64 characters that encode its bytes alone, at each
// offset it may lie at in the encoded data.
func secretForms(v string) []string {
	forms := []string{v, jsonEscape(v, true), jsonEscape(v, false), jsonEscape(jsonEscape(v, false), false),
		url.QueryEscape(v), url.PathEscape(v)}
	for off := range 3 {
		enc := base64.StdEncoding.EncodeToString(append(make([]byte, off), v...))
		from, to := (off+2)/3*4, (off+len(v))/3*4
		forms = append(forms, enc[from:to])
	}
	out := forms[:0]
	for _, f := range forms {
		if len(f) >= masking.MinLength && !slices.Contains(out, f) {
			out = append(out, f)
		}
	}
	return out
}

// jsonEscape is v as encoding/json writes it within a string's quotes.
func jsonEscape(v string, html bool) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(html)
	_ = enc.Encode(v)
	s := strings.TrimSuffix(b.String(), "\n")
	return s[1 : len(s)-1]
}

// describe names where a value came from.
func (r *protectRun) describe(v string) string {
	for name, s := range r.sources {
		if s == v {
			return fmt.Sprintf("secret %s %q", name, v)
		}
	}
	if slices.Contains(r.known, v) {
		return fmt.Sprintf("%q, sealed by the workflow", v)
	}
	return fmt.Sprintf("%q, sealed by this decision", v)
}

func (r *protectRun) fatalf(format string, args ...any) {
	r.t.Helper()
	r.t.Fatalf(format+"\ntrail:\n%s", append(args, strings.Join(r.trail, "\n"))...)
}
