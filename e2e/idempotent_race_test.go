package e2e_test

import (
	"fmt"
	"net/http"
	"sync"
	"testing"

	"github.com/flowvault/flowvault/schemas/conductor"
)

// Starts with one idempotency key at the same moment, RETURN_EXISTING: the
// log lets one win, and every other answers its id, readable at once (a
// loser answers after an append conflict, before the read model may have
// the winner).
func TestConcurrentReturnExisting(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.register(waitFlow)
	const keys, starters = 10, 8
	for k := range keys {
		key := fmt.Sprintf("race-%d", k)
		var wg sync.WaitGroup
		codes, ids := make([]int, starters), make([]string, starters)
		for i := range starters {
			wg.Go(func() {
				codes[i], ids[i] = e.do("POST", "/api/workflow", conductor.StartWorkflowRequest{Name: "wait_flow",
					IdempotencyKey: key, IdempotencyStrategy: conductor.IdempotencyReturnExisting})
			})
		}
		wg.Wait()
		for i := range starters {
			if codes[i] != http.StatusOK || ids[i] != ids[0] {
				t.Fatalf("key %s, start %d: %d %s; want 200 and the id %s", key, i, codes[i], ids[i], ids[0])
			}
		}
		e.workflow(ids[0])
	}
}
