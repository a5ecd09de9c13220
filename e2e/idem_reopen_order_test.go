package e2e_test

import (
	"fmt"
	"net/http"
	"path/filepath"
	"testing"

	"github.com/flowvault/flowvault/internal/nodetest"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// A restart, retry or rerun of an ended workflow and a FAIL_ON_RUNNING or
// RETURN_EXISTING start with its idempotency key, one sent once the other
// was answered, in either order, on one engine and on two that share a
// log: the second sees the first, and at most one of them runs. Each round
// takes a fresh key; a round in which both are answered as started (the
// reopen 2xx, the start a new id) ran two workflows with one key. (Two
// sent at the same moment may still both run: see README, Idempotency.)
func TestKeyedStartAndReopenOneAfterTheOther(t *testing.T) {
	t.Parallel()
	a, baseA := nodetest.Start(t)
	b, baseB := nodetest.StartConfig(t, nodetest.JoinConfig(t, a, filepath.Join(t.TempDir(), "b")))
	ea, eb := &env{t: t, node: a, base: baseA}, &env{t: t, node: b, base: baseB}
	ea.register(waitFlow)
	reopens := []struct {
		name, path string
		body       any
	}{
		{"restart", "/restart", nil},
		{"retry", "/retry", nil},
		{"rerun", "/rerun", map[string]any{}},
	}
	const rounds = 50
	for _, strategy := range []string{conductor.IdempotencyFailOnRunning, conductor.IdempotencyReturnExisting} {
		for _, engines := range []struct {
			name           string
			reopen, starts *env
		}{{"one engine", ea, ea}, {"two engines", ea, eb}} {
			for _, ro := range reopens {
				for _, startFirst := range []bool{false, true} {
					order := "reopen then start"
					if startFirst {
						order = "start then reopen"
					}
					t.Run(strategy+"/"+engines.name+"/"+ro.name+"/"+order, func(t *testing.T) {
						both := 0
						for round := range rounds {
							key := fmt.Sprintf("%s-%s-%s-%s-%d", strategy, engines.name, ro.name, order, round)
							req := conductor.StartWorkflowRequest{Name: "wait_flow", IdempotencyKey: key,
								IdempotencyStrategy: strategy}
							w1 := ea.must(http.StatusOK, "POST", "/api/workflow", req)
							ea.must(http.StatusNoContent, "DELETE", "/api/workflow/"+w1, nil)
							// Both engines' read models show it ended, so that
							// neither refuses for the key's workflow running.
							ea.waitStatus(w1, conductor.WorkflowTerminated)
							eb.waitStatus(w1, conductor.WorkflowTerminated)
							var reopenCode, startCode int
							var w2 string
							reopen := func() { reopenCode, _ = engines.reopen.do("POST", "/api/workflow/"+w1+ro.path, ro.body) }
							start := func() { startCode, w2 = engines.starts.do("POST", "/api/workflow", req) }
							if startFirst {
								start()
								reopen()
							} else {
								reopen()
								start()
							}
							reopened := reopenCode/100 == 2
							started := startCode == http.StatusOK && w2 != w1
							if !reopened && !started {
								t.Fatalf("round %d: neither went ahead: %s %d, start %d %s", round, ro.name, reopenCode, startCode, w2)
							}
							if reopened && started {
								both++
								ea.waitStatus(w1, conductor.WorkflowRunning)
								ea.waitStatus(w2, conductor.WorkflowRunning)
							}
						}
						if both > 0 {
							t.Errorf("%d rounds of %d ran two workflows with one key", both, rounds)
						}
					})
				}
			}
		}
	}
}
