package e2e_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/executor"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/node"
	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/flowvault/flowvault/secrets"
)

const crashCompact = `{"name":"crash_compact","version":1,"tasks":[
 {"name":"keep","taskReferenceName":"keep","type":"SET_VARIABLE","inputParameters":{"_secrets":{"tok":"${workflow.input._secrets.tok}"}}}]}`

// Kill -9 the server in the middle of the compaction of a backlog of
// ended workflows, each sealing _secrets under its own key: a pass
// records the workflows compacted one by one and erases their keys
// together at its end, so the kill lands between the two for the
// workflows recorded by then. After a restart every workflow is compacted
// exactly once, its _secrets read "***", its key cannot be opened (not
// even offline, with the master key), no rewrite of a key page left the
// revision it replaced, and nothing is left running or awaiting
// compaction.
func TestCrashDuringCompaction(t *testing.T) {
	t.Parallel()
	s := newServerSetup(t)
	data, base, logFile := s.data, s.base, s.log
	args := func(delay string) []string { return s.args("--insecure-dev", "--compaction-delay", delay) }
	// The workflows end first and wait: the backlog is compacted after a
	// restart, as after an outage.
	p := &serverProc{t: t, log: logFile, args: args("1h")}
	p.start(base)
	t.Cleanup(p.kill)
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(logFile.Name())
			var keep []string
			for l := range strings.SplitSeq(string(b), "\n") {
				if l != "" && !strings.HasPrefix(l, "{") || strings.Contains(l, `"level":"WARN"`) || strings.Contains(l, `"level":"ERROR"`) || strings.Contains(l, "compact") {
					keep = append(keep, l)
				}
			}
			t.Logf("server warnings, errors and compaction lines:\n%s", strings.Join(keep[:min(len(keep), 200)], "\n"))
		}
	})
	e := &env{t: t, base: base}
	e.register(crashCompact)

	const n = 1500
	ids := make([]string, n)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < n; i += 8 {
				status, body := e.do("POST", "/api/workflow", conductor.StartWorkflowRequest{Name: "crash_compact",
					Input: map[string]any{"_secrets": map[string]any{"tok": "tok-" + rand.Text()}}})
				if status != http.StatusOK {
					t.Errorf("start: %d %s", status, body)
					return
				}
				ids[i] = body
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	testutil.Eventually(t, 120*time.Second, 50*time.Millisecond, func() error {
		if running, backlog := e.engineMetric("flowvault_workflows_running"), e.engineMetric("flowvault_compaction_backlog_workflows"); running != 0 || backlog != n {
			return fmt.Errorf("%d workflows running, %d awaiting compaction", running, backlog)
		}
		return nil
	})
	p.stop()

	// Compact them all at once, and kill once a third of them are
	// recorded compacted: the pass lists all of them, so none of their
	// keys is erased yet.
	p.args = args("0s")
	p.launch()
	backlog := -1
	testutil.Eventually(t, 120*time.Second, time.Millisecond, func() error {
		// Not e.do: the server refuses connections until it listens.
		res, err := http.Get(base + "/metrics")
		if err != nil {
			return err
		}
		b, err := io.ReadAll(res.Body)
		res.Body.Close()
		if err != nil || res.StatusCode != http.StatusOK {
			return fmt.Errorf("metrics: %d %v", res.StatusCode, err)
		}
		body := string(b)
		for line := range strings.SplitSeq(body, "\n") {
			if v, ok := strings.CutPrefix(line, "flowvault_compaction_backlog_workflows "); ok {
				f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
				if err != nil {
					t.Fatalf("metric %s: %v", line, err)
				}
				backlog = int(f)
			}
		}
		if backlog < 0 || backlog > n-n/3 {
			return fmt.Errorf("%d awaiting compaction", backlog)
		}
		return nil
	})
	p.kill()
	if backlog == 0 {
		t.Fatalf("compaction ended before the kill")
	}
	t.Logf("killed with %d of %d workflows awaiting compaction", backlog, n)

	logged, err := logFile.Seek(0, io.SeekCurrent)
	if err != nil {
		t.Fatal(err)
	}
	p.start(base)
	testutil.Eventually(t, 120*time.Second, 50*time.Millisecond, func() error {
		if running, backlog := e.engineMetric("flowvault_workflows_running"), e.engineMetric("flowvault_compaction_backlog_workflows"); running != 0 || backlog != 0 {
			return fmt.Errorf("%d workflows running, %d awaiting compaction", running, backlog)
		}
		return nil
	})
	// What the sweep at start-up found of the kill's leftovers: the keys
	// of the workflows recorded compacted before it.
	if b, err := os.ReadFile(logFile.Name()); err == nil && int64(len(b)) >= logged {
		for l := range strings.SplitSeq(string(b[logged:]), "\n") {
			if strings.Contains(l, "erased keys of compacted workflows") || strings.Contains(l, "compaction sweep failed") {
				t.Logf("after the restart: %s", l)
			}
		}
	}
	for _, id := range ids {
		wf := e.workflow(id)
		if wf.Status != conductor.WorkflowCompleted || wf.Input["_secrets"] != "***" {
			t.Errorf("workflow %s: %s, input %v", id, wf.Status, wf.Input)
		}
		for _, task := range wf.Tasks {
			if task.InputData["_secrets"] != "***" {
				t.Errorf("workflow %s task %s: input %v", id, task.ReferenceTaskName, task.InputData)
			}
		}
	}
	// A graceful stop: the last pass's erasure is over when it returns.
	p.stop()

	ctx := context.Background()
	keys, log := openStoppedKeys(t, data)
	superseded, err := keys.EraseSuperseded(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if superseded != 0 {
		t.Errorf("%d superseded key revisions were left on disk: keys destroyed by compaction still in them", superseded)
	}
	seen := map[string]string{}
	for _, id := range ids {
		recs, err := log.ReadSubject(ctx, "fv.wf."+eventlog.Token(id), 0)
		if err != nil {
			t.Fatal(err)
		}
		compacted := 0
		for _, r := range recs {
			for _, env := range r.Events {
				if env.Type == "workflow.compacted" {
					compacted++
				}
			}
		}
		if compacted != 1 {
			t.Errorf("workflow %s: compacted %d times", id, compacted)
		}
		w, err := executor.Fold(nil, recs)
		if err != nil {
			t.Fatal(err)
		}
		if w.SecretsKey == "" {
			t.Errorf("workflow %s: no secrets key recorded", id)
			continue
		}
		if other, ok := seen[w.SecretsKey]; ok {
			t.Errorf("workflows %s and %s share key %s", other, id, w.SecretsKey)
		}
		seen[w.SecretsKey] = id
		if _, err := keys.DataKey(ctx, w.SecretsKey); !errors.Is(err, secrets.ErrKeyDestroyed) {
			t.Errorf("workflow %s: key %s of a compacted workflow: %v, want it destroyed", id, w.SecretsKey, err)
		}
	}
}

// openStoppedKeys opens the log and the key store of a stopped server's
// data dir, as `flowvault keys` does, for the test's end.
func openStoppedKeys(t *testing.T, data string) (*secrets.Keys, *eventlog.Log) {
	t.Helper()
	ctx := context.Background()
	cfg := node.DefaultConfig()
	cfg.DataDir, cfg.NATSListen = data, ""
	release, err := node.LockDataDir(data)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(release)
	log, mk, _, err := node.OpenLog(ctx, cfg, nil, eventlog.Options{Logger: testutil.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = log.Close() })
	keys, err := secrets.OpenKeys(ctx, log.JetStream(), mk, secrets.KeysOptions{Logger: testutil.Logger(t), DevKeyFile: cfg.DevKeyFile(), RequireKeyring: true})
	if err != nil {
		t.Fatal(err)
	}
	return keys, log
}
