package api_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/flowvault/flowvault/internal/nodetest"
)

// Concurrent upserts of one definition all succeed, the last one written
// winning, as in Conductor: SDK task handlers register their definitions
// with PUT as several worker processes start at once. A write that found
// the definition changed since its access check is checked and written
// again by the server, not answered 409.
func TestConcurrentUpsertsOfOneDefinition(t *testing.T) {
	t.Parallel()
	_, base, token := nodetest.StartSecure(t)
	const writers, rounds = 8, 4
	tests := []struct {
		name, method, path string
		body               func(i int) string
		status             int
		check              func(body string) error
	}{
		{"task definition PUT", "PUT", "/api/metadata/taskdefs", func(i int) string {
			return fmt.Sprintf(`{"name":"conc_4","timeoutSeconds":3600,"totalTimeoutSeconds":0,"retryCount":%d}`, i)
		}, http.StatusNoContent, nil},
		{"task definitions POST", "POST", "/api/metadata/taskdefs", func(i int) string {
			return fmt.Sprintf(`[{"name":"conc_a","retryCount":%d},{"name":"conc_b","retryCount":%d}]`, i, i)
		}, http.StatusNoContent, nil},
		{"workflow definition POST overwrite", "POST", "/api/metadata/workflow?overwrite=true", func(i int) string {
			return fmt.Sprintf(`{"name":"conc_wf","description":"%d","tasks":[{"name":"conc_4","taskReferenceName":"a"}]}`, i)
		}, http.StatusNoContent, nil},
		{"workflow definitions PUT", "PUT", "/api/metadata/workflow", func(i int) string {
			return fmt.Sprintf(`[{"name":"conc_wf2","description":"%d","tasks":[{"name":"conc_4","taskReferenceName":"a"}]},`+
				`{"name":"conc_wf2","version":2,"tasks":[{"name":"conc_4","taskReferenceName":"a"}]}]`, i)
		}, http.StatusOK, func(body string) error {
			if !strings.Contains(body, `"bulkErrorResults":{}`) {
				return fmt.Errorf("bulk errors: %s", body)
			}
			return nil
		}},
		{"task tags POST", "POST", "/api/metadata/task/conc_4/tags", func(i int) string {
			return fmt.Sprintf(`{"key":"k%d","value":"v"}`, i)
		}, http.StatusNoContent, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for round := range rounds {
				var wg sync.WaitGroup
				errs := make(chan error, writers)
				for i := range writers {
					wg.Add(1)
					go func() {
						defer wg.Done()
						req, err := http.NewRequest(tt.method, base+tt.path, strings.NewReader(tt.body(round*writers+i)))
						if err != nil {
							errs <- err
							return
						}
						req.Header.Set("Content-Type", "application/json")
						req.Header.Set("X-Authorization", token)
						resp, err := http.DefaultClient.Do(req)
						if err != nil {
							errs <- err
							return
						}
						defer resp.Body.Close()
						b, _ := io.ReadAll(resp.Body)
						switch {
						case resp.StatusCode != tt.status:
							errs <- fmt.Errorf("writer %d: %d %s", i, resp.StatusCode, b)
						case tt.check != nil:
							if err := tt.check(string(b)); err != nil {
								errs <- fmt.Errorf("writer %d: %v", i, err)
							}
						}
					}()
				}
				wg.Wait()
				close(errs)
				for err := range errs {
					t.Errorf("round %d: %v", round, err)
				}
			}
		})
	}
}
