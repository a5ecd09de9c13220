package e2e_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/internal/leaktest"
	"github.com/flowvault/flowvault/masking"
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// An upgrade onto a version whose maskedFields names a field of the
// workflow input it gives seals that field, as a start of that version
// does: the input was sealed by the fields of the version it ran before,
// which named none, so the value went into the upgrade's record, the
// read models and the files in plain text, which views showed as "***"
// and compaction could not destroy. Every answer, the log, every
// stream, file and Pebble key and value is searched for the value.
func TestLeakOnUpgradeOntoMaskedFields(t *testing.T) {
	t.Parallel()
	h := startHunt(t, "upcard")
	e, vals := h.e, h.vals
	e.register(`{"name":"up_masked","version":1,"tasks":[{"name":"g","taskReferenceName":"g","type":"WAIT"}]}`,
		`{"name":"up_masked","version":2,"maskedFields":["card"],"tasks":[{"name":"g","taskReferenceName":"g","type":"WAIT"}]}`)
	v1 := 1
	id := e.must(http.StatusOK, "POST", "/api/workflow", conductor.StartWorkflowRequest{Name: "up_masked", Version: &v1,
		Input: map[string]any{"plain": "yes"}})
	e.must(http.StatusOK, "POST", "/api/workflow/"+id+"/upgrade", map[string]any{"name": "up_masked", "version": 2,
		"workflowInput": map[string]any{"card": vals["upcard"]}})
	if wf := e.workflow(id); wf.WorkflowVersion != 2 || wf.Input["card"] != "***" {
		t.Fatalf("upgraded: version %d, card %v, want 2 and ***", wf.WorkflowVersion, wf.Input["card"])
	}
	e.must(http.StatusOK, "POST", "/api/tasks/"+id+"/g/COMPLETED", map[string]any{})
	e.waitStatus(id, conductor.WorkflowCompleted)
	h.scan(t)
}

// An upgrade that gives no workflowInput onto a version whose
// maskedFields names a field of the input the workflow kept seals that
// field, as a start of that version does: the input went on as the
// version it started under stored it, in plain text in Pebble's
// executions read model through compaction, while views masked it by the
// new version and showed "***". (The input's _secrets block has the
// workflow compacted either way.) The start's record in the log holds it as
// given, which the version it started under did not mask; what the read
// models keep is searched, and holds it nowhere.
func TestLeakOnUpgradeKeepingInputOntoMaskedFields(t *testing.T) {
	t.Parallel()
	n, card, sc := startCardNode(t)
	e := n.env(t, sc)
	e.register(`{"name":"up_kept","version":1,"tasks":[{"name":"g","taskReferenceName":"g","type":"WAIT"}]}`,
		`{"name":"up_kept","version":2,"maskedFields":["card"],"tasks":[{"name":"g","taskReferenceName":"g","type":"WAIT"}]}`)
	v1 := 1
	id := e.must(http.StatusOK, "POST", "/api/workflow", conductor.StartWorkflowRequest{Name: "up_kept", Version: &v1,
		Input: map[string]any{"card": card, "plain": "yes", "_secrets": map[string]any{"k": "v"}}})
	e.must(http.StatusOK, "POST", "/api/workflow/"+id+"/upgrade", map[string]any{"name": "up_kept", "version": 2})
	if wf := e.workflow(id); wf.WorkflowVersion != 2 || wf.Input["card"] != masking.Mask || wf.Input["plain"] != "yes" {
		t.Fatalf("upgraded: version %d, input %v, want 2, card %s and plain yes", wf.WorkflowVersion, wf.Input, masking.Mask)
	}
	e.must(http.StatusOK, "POST", "/api/tasks/"+id+"/g/COMPLETED", map[string]any{})
	e.waitStatus(id, conductor.WorkflowCompleted)
	e.waitCompacted(id)
	n.stopAndScanPebble(t, sc)
}

// A restart onto the latest version (useLatestDefinitions), of one
// workflow or in bulk, whose maskedFields names a field of the input the
// workflow keeps seals that field, as an upgrade keeping its input does:
// the input went on as the version it started under stored it, in plain
// text in Pebble's executions read model, while views masked it by the
// new version and showed "***". The first run, compacted for its _secrets
// block, is restarted as one whose key is gone.
func TestLeakOnRestartOntoMaskedFields(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		restart func(e *env, id string)
	}{
		{"one", func(e *env, id string) {
			e.must(http.StatusNoContent, "POST", "/api/workflow/"+id+"/restart?useLatestDefinitions=true", nil)
		}},
		{"bulk", func(e *env, id string) {
			var res conductor.BulkResponse
			if err := json.Unmarshal([]byte(e.must(http.StatusOK, "POST", "/api/workflow/bulk/restart?useLatestDefinitions=true", []string{id})), &res); err != nil {
				e.t.Fatal(err)
			}
			if len(res.BulkSuccessfulResults) != 1 {
				e.t.Fatalf("bulk restart: %+v, want %s restarted", res, id)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			n, card, sc := startCardNode(t)
			// The run of version 1, which does not mask the card, shows
			// it: its answers are not searched.
			first := n.env(t)
			first.register(`{"name":"re_kept","version":1,"tasks":[{"name":"g","taskReferenceName":"g","type":"WAIT"}]}`)
			id := first.start("re_kept", map[string]any{"card": card, "plain": "yes", "_secrets": map[string]any{"k": "v"}})
			first.must(http.StatusOK, "POST", "/api/tasks/"+id+"/g/COMPLETED", map[string]any{})
			first.waitStatus(id, conductor.WorkflowCompleted)
			first.waitCompacted(id)
			e := n.env(t, sc)
			e.register(`{"name":"re_kept","version":2,"maskedFields":["card"],"tasks":[{"name":"g","taskReferenceName":"g","type":"WAIT"}]}`)
			tc.restart(e, id)
			if wf := e.workflow(id); wf.WorkflowVersion != 2 || wf.Input["card"] != masking.Mask || wf.Input["plain"] != "yes" {
				t.Fatalf("restarted: version %d, input %v, want 2, card %s and plain yes", wf.WorkflowVersion, wf.Input, masking.Mask)
			}
			e.must(http.StatusOK, "POST", "/api/tasks/"+id+"/g/COMPLETED", map[string]any{})
			e.waitStatus(id, conductor.WorkflowCompleted)
			n.stopAndScanPebble(t, sc)
		})
	}
}

// An upgrade that gives no workflowInput onto a version masking a field
// whose leaves the workflow keeps sealed already (the version it ran
// copies the field into a _secrets block, which seals it leaf by leaf at
// the start) hands the field to the tasks after it as it was given: the
// input recorded again sealed the field whole from its JSON, in which a
// sealed leaf reads "***", and the value was gone for good.
func TestUpgradeOntoMaskedFieldKeepsSealedLeaves(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	num := "41" + alnum(20)
	e.register(`{"name":"up_leaves","version":1,"tasks":[{"name":"g","taskReferenceName":"g","type":"WAIT",
	  "inputParameters":{"_secrets":{"c":"${workflow.input.card}"}}}]}`,
		`{"name":"up_leaves","version":2,"maskedFields":["card"],"tasks":[{"name":"g","taskReferenceName":"g","type":"WAIT",
	  "inputParameters":{"_secrets":{"c":"${workflow.input.card}"}}},
	  {"name":"up_leaves_use","taskReferenceName":"use","inputParameters":{"num":"${workflow.input.card.num}","holder":"${workflow.input.card.holder}"}}]}`)
	v1 := 1
	id := e.must(http.StatusOK, "POST", "/api/workflow", conductor.StartWorkflowRequest{Name: "up_leaves", Version: &v1,
		Input: map[string]any{"card": map[string]any{"num": num, "holder": "bob"}}})
	e.must(http.StatusOK, "POST", "/api/workflow/"+id+"/upgrade", map[string]any{"name": "up_leaves", "version": 2})
	if wf := e.workflow(id); wf.WorkflowVersion != 2 || wf.Input["card"] != masking.Mask {
		t.Fatalf("upgraded: version %d, card %v, want 2 and %s", wf.WorkflowVersion, wf.Input["card"], masking.Mask)
	}
	e.must(http.StatusOK, "POST", "/api/tasks/"+id+"/g/COMPLETED", map[string]any{})
	use := e.takeOne("up_leaves_use")
	if use.InputData["num"] != num || use.InputData["holder"] != "bob" {
		t.Errorf("the task after the upgrade is given num %v and holder %v, want the card's as given (%s, bob)",
			use.InputData["num"], use.InputData["holder"], num)
	}
	e.completeTask(use, nil)
	e.waitStatus(id, conductor.WorkflowCompleted)
}

// An upgrade, and a restart onto the latest version, that keep an input
// near the log's record limit, onto a version masking a field of it, are
// recorded with the field sealed: they recorded the whole input again,
// sealed by the new version, and with the new version's definition the
// record passed the limit (413) although the workflow started with that
// input. They record the field alone; no record after the start's, which
// keeps the input as given (version 1 masks nothing), and nothing in
// Pebble holds the field in plain text.
func TestKeepingAnInputNearTheRecordLimitOntoMaskedFields(t *testing.T) {
	t.Parallel()
	n, card, sc := startCardNode(t)
	// Version 1 shows the card: the answers are not searched.
	e := n.env(t)
	e.register(`{"name":"near_limit","version":1,"tasks":[{"name":"g","taskReferenceName":"g","type":"WAIT"}]}`,
		`{"name":"near_limit","version":2,"maskedFields":["card"],"description":"`+strings.Repeat("d", 256)+`",
		  "tasks":[{"name":"g","taskReferenceName":"g","type":"WAIT"}]}`)
	v1 := 1
	start := func(card string, pad int) string {
		return e.must(http.StatusOK, "POST", "/api/workflow", conductor.StartWorkflowRequest{Name: "near_limit", Version: &v1,
			Input: map[string]any{"card": card, "pad": strings.Repeat("x", pad)}})
	}
	// What the start's record holds besides the pad, measured on a small
	// one (with a card of its own, which version 1 keeps), is the same for
	// the large: the input is as large as the start can take, within
	// slack bytes.
	const probe, slack = 100 << 10, 64
	limit := eventlog.DefaultConfig().MaxRecordBytes
	pad := limit - (recordSize(t, e.records(start("pr"+alnum(30), probe))[0]) - probe) - slack
	for _, tc := range []struct {
		name string
		move func(e *env, id string)
	}{
		{"upgrade", func(e *env, id string) {
			e.must(http.StatusOK, "POST", "/api/workflow/"+id+"/upgrade", map[string]any{"name": "near_limit", "version": 2})
		}},
		{"restart", func(e *env, id string) {
			e.must(http.StatusOK, "POST", "/api/tasks/"+id+"/g/COMPLETED", map[string]any{})
			e.waitStatus(id, conductor.WorkflowCompleted)
			e.must(http.StatusNoContent, "POST", "/api/workflow/"+id+"/restart?useLatestDefinitions=true", nil)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := n.env(t)
			id := start(card, pad)
			if size := recordSize(t, e.records(id)[0]); size > limit || size < limit-2*slack {
				t.Fatalf("the start's record holds %d bytes, want the input to take it near the limit, %d", size, limit)
			}
			tc.move(e, id)
			wf := e.workflow(id)
			if wf.WorkflowVersion != 2 || wf.Input["card"] != masking.Mask || wf.Input["pad"] != strings.Repeat("x", pad) {
				t.Fatalf("moved: version %d, card %v, pad of %d bytes; want 2, %s and the pad kept", wf.WorkflowVersion,
					wf.Input["card"], len(fmt.Sprint(wf.Input["pad"])), masking.Mask)
			}
			e.must(http.StatusOK, "POST", "/api/tasks/"+id+"/g/COMPLETED", map[string]any{})
			e.waitStatus(id, conductor.WorkflowCompleted)
			for _, r := range e.records(id)[1:] {
				for _, env := range r.Events {
					if bytes.Contains(env.Data, []byte(card)) {
						t.Errorf("record %d (%s) holds the card in plain text", r.Seq, env.Type)
					}
				}
			}
		})
	}
	n.stopAndScanPebble(t, sc)
}

// startCardNode starts a leakNode, which lives until the test's end or
// its stop, and a scanner of a card value it returns.
func startCardNode(t *testing.T) (*leakNode, string, *leaktest.Scanner) {
	t.Helper()
	card := "ca" + alnum(30)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel) // after the node's stop, registered later
	return startLeakNode(ctx, t, nil), card, leaktest.New([]byte(card))
}

// recordSize returns the bytes r's events take as one record of the log.
func recordSize(t *testing.T, r eventlog.Record) int {
	t.Helper()
	b, err := schemas.EncodeRecord(r.Events)
	if err != nil {
		t.Fatal(err)
	}
	return len(b)
}
