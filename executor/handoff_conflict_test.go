package executor

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flowvault/flowvault/audit"
	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/schemas"
)

// resolvesSecret prepares every hand-off as if it resolved one secret,
// and counts the preparations.
type resolvesSecret struct{ prepared atomic.Int32 }

func (r *resolvesSecret) Prepare(context.Context, *engine.Workflow, *engine.Task) (map[string]any, []schemas.ResolvedRef, error) {
	r.prepared.Add(1)
	return map[string]any{"token": "resolved"},
		[]schemas.ResolvedRef{{Kind: "secret", Name: "api_token", Version: 1, Principal: "alice", GrantedBy: "creator"}}, nil
}

// takeLosesRace lets another writer append to the workflow just before
// the first take's record: the take's append then fails its expectation,
// as it does when another engine decides on the workflow at the same time.
type takeLosesRace struct {
	log  *eventlog.Log
	lost atomic.Bool
}

func (a *takeLosesRace) Append(ctx context.Context, subj string, envs []schemas.Envelope, expected uint64, opts ...eventlog.AppendOption) (uint64, error) {
	if started := takeOf(envs); started != nil && a.lost.CompareAndSwap(false, true) {
		env, err := schemas.Default.Encode(&schemas.TaskLogged{TaskID: started.TaskID, Lines: []string{"another writer"}, Times: []int64{1}})
		if err != nil {
			return 0, err
		}
		env.ID = "another-writer"
		if _, err := a.log.Append(ctx, subj, []schemas.Envelope{env}, expected); err != nil {
			return 0, err
		}
	}
	return a.log.Append(ctx, subj, envs, expected, opts...)
}

// takeOf returns the TaskStarted event of a take's record, or nil.
func takeOf(envs []schemas.Envelope) *schemas.TaskStarted {
	if len(envs) == 0 || envs[0].Type != (&schemas.TaskStarted{}).EventType() {
		return nil
	}
	ev, err := schemas.Default.Decode(envs[0])
	if err != nil {
		return nil
	}
	started, _ := ev.(*schemas.TaskStarted)
	return started
}

// A hand-off whose append lost a conflict is prepared again, and only the
// record that is stored holds its resolutions: the audit trail shows each
// resolution of the hand-off once, not once per attempt.
func TestRetriedHandOffRecordsEachResolutionOnce(t *testing.T) {
	l := testutil.OpenLog(t, "")
	prep := &resolvesSecret{}
	race := &takeLosesRace{log: l}
	e := startAppendingThrough(t, l, race, prep)
	ctx := testutil.Context(t, 30*time.Second)
	const id = "wf-handoff-conflict"
	startInline(ctx, t, e, id, `{"name":"handoff_conflict","tasks":[{"name":"handoff_task","taskReferenceName":"t"}]}`)

	reply := takeOver(ctx, t, l, e, id)
	if reply.Error != nil || reply.Task == nil {
		t.Fatalf("take: %+v", reply.Error)
	}
	if !race.lost.Load() || prep.prepared.Load() != 2 {
		t.Fatalf("conflict injected %v, hand-off prepared %d times: want a conflict and a second preparation",
			race.lost.Load(), prep.prepared.Load())
	}
	if reply.Task.InputData["token"] != "resolved" {
		t.Fatalf("the taker got input %v, not the prepared one", reply.Task.InputData)
	}

	trail, err := audit.NewTrail(l).Read(ctx, audit.Filter{Workflow: id})
	if err != nil {
		t.Fatal(err)
	}
	var resolutions int
	for _, en := range trail.Entries {
		if en.Action == audit.ActSecretResolve {
			resolutions++
		}
	}
	if resolutions != 1 {
		t.Fatalf("the audit trail shows %d resolutions of the one hand-off, want 1: %+v", resolutions, trail.Entries)
	}
	w, err := e.State(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if got := w.Tasks[0].Resolved; len(got) != 1 {
		t.Fatalf("the task records %d resolutions, want 1: %+v", len(got), got)
	}
}
