//go:build linux

package node_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flowvault/flowvault/internal/leaktest"
	"github.com/flowvault/flowvault/internal/nodetest"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/masking"
	"github.com/flowvault/flowvault/node"
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/secrets"
)

// A node whose disk filled up takes writes again by itself once there is
// room, without a restart: on a disk of its own (a 48 MB tmpfs), filled
// by a file and by the node's own writes, the writes are refused with a
// retryable 503 saying the store is out of storage; once the file is
// removed a new workflow starts and completes, every write answered
// before is still there, no task whose result was acknowledged is handed
// out again, every workflow that ended is compacted (those whose
// compaction fell due on the full disk too), and the planted secret is in
// no file of the data dir.
func TestWritesResumeOnceTheDiskHasRoom(t *testing.T) {
	disk, child := testutil.SmallDisk(t, 48<<20)
	if !child {
		return
	}
	cfg := nodetest.Config(filepath.Join(disk, "data"))
	// The read models' memtables are flushed as the disk fills, and
	// meet its end too.
	cfg.PebbleMemTableSize = 256 << 10
	logger, logs := testutil.CapturingLogger()
	n, base := nodetest.StartLogger(t, cfg, logger)
	c := nodetest.Client{TB: t, Base: base}
	planted := leaktest.RandomSecret(32)
	quoted, _ := json.Marshal(string(planted))

	c.Must(http.StatusNoContent, "POST", "/api/metadata/taskdefs",
		`[{"name":"df_work","retryCount":0,"responseTimeoutSeconds":600,"ownerEmail":"a@b.c"}]`)
	c.Must(http.StatusNoContent, "POST", "/api/metadata/workflow", `{"name":"df_wf","version":1,"ownerEmail":"a@b.c","schemaVersion":2,
		"tasks":[{"name":"df_work","taskReferenceName":"df_ref","type":"SIMPLE"}]}`)
	c.Must(http.StatusOK, "PUT", "/api/secrets/df_planted", string(quoted))

	var (
		started []string              // starts answered 200
		secrets []string              // secret PUTs answered 200
		acked   = map[string]string{} // task id -> workflow id, results answered 200
	)
	input := `{"_secrets":{"tok":` + string(quoted) + `},"pad":"` + strings.Repeat("p", 2<<10) + `"}`
	start := func() (int, string) {
		code, body := c.Do("POST", "/api/workflow/df_wf", input)
		if code == http.StatusOK {
			started = append(started, body)
		}
		return code, body
	}
	// work polls one task and completes it: the status of the poll, of
	// the update (0 when there was nothing to do), and the workflow's id.
	work := func() (int, int, string) {
		code, task := c.Do("GET", "/api/tasks/poll/df_work?workerid=df_worker", "")
		if code != http.StatusOK {
			return code, 0, ""
		}
		taskID, wf := field(t, task, "taskId"), field(t, task, "workflowInstanceId")
		if _, done := acked[taskID]; done {
			t.Errorf("task %s handed out again after its result was acknowledged", taskID)
		}
		ucode, _ := c.Do("POST", "/api/tasks", fmt.Sprintf(`{"taskId":%q,"workflowInstanceId":%q,"status":"COMPLETED","outputData":{"n":1}}`, taskID, wf))
		if ucode == http.StatusOK {
			acked[taskID] = wf
		}
		return code, ucode, wf
	}
	putSecret := func(i int) (int, string) {
		key := fmt.Sprintf("df_s%d", i)
		code, body := c.Do("PUT", "/api/secrets/"+key, string(quoted))
		if code == http.StatusOK {
			secrets = append(secrets, key)
		}
		return code, body
	}
	// clear: whether the refusal must say the store is out of storage.
	retryable503 := func(what string, clear bool, code int, body string) {
		t.Helper()
		if code != http.StatusServiceUnavailable || !strings.Contains(body, `"retryable":true`) {
			t.Fatalf("%s on a full disk: %d %s; want a retryable 503", what, code, body)
		}
		if clear && !strings.Contains(body, "out of storage") {
			t.Fatalf("%s on a full disk: %d %s; want it to say the store is out of storage", what, code, body)
		}
	}

	// With room: workflows start and complete.
	for i := range 4 {
		if code, body := start(); code != http.StatusOK {
			t.Fatalf("start %d with room: %d %s", i, code, body)
		}
		putSecret(i)
	}
	for range 2 {
		if code, ucode, _ := work(); code != http.StatusOK || ucode != http.StatusOK {
			t.Fatalf("a task with room: poll %d, update %d", code, ucode)
		}
	}

	// Fill the disk: a file takes all the room there is but 2 MiB, which
	// the node's own writes fill, the log's and the read models'.
	filler := filepath.Join(disk, "filler")
	testutil.FillDisk(t, filler, 2<<20)
	// Each write is answered until its stream meets the end of the disk
	// (a file's last page may have had room), then refused.
	untilRefused := func(what string, clear bool, write func(i int) (int, string)) {
		t.Helper()
		var code int
		var body string
		for i := 0; ; i++ {
			if i == 3000 {
				t.Fatalf("3000 of %s on a full disk and none refused (last: %d %s)", what, code, body)
			}
			if code, body = write(i); code != http.StatusOK {
				break
			}
		}
		t.Logf("%s on a full disk: %d %s", what, code, body)
		retryable503(what, clear, code, body)
		// And the next one.
		code, body = write(-1)
		retryable503(what+" after the failure", clear, code, body)
	}
	untilRefused("starts", true, func(int) (int, string) {
		code, body := start()
		work()
		return code, body
	})
	// A secret's PUT writes its data key to a key-value bucket first,
	// whose store may be the one that fails: a write to it is not
	// answered, and the PUT's 503 said only that it timed out.
	untilRefused("secrets' PUTs", true, func(i int) (int, string) { return putSecret(100 + i) })
	// The PUTs refused by the log wrote their data keys first: the key
	// bucket meets the end of the disk too, and says so as the log does,
	// then refuses each PUT at once.
	var code int
	var body string
	for i := 0; !strings.Contains(body, "store data key"); i++ {
		if i == 500 {
			t.Fatalf("500 secrets' PUTs on a full disk and none refused by the key bucket (last: %d %s)", code, body)
		}
		code, body = putSecret(1000 + i)
	}
	t.Logf("a secret's PUT on a full disk, refused by the key bucket: %d %s", code, body)
	retryable503("a secret's PUT refused by the key bucket", true, code, body)
	code, body = putSecret(999)
	if want := "KV_FV_KEYS failed a write and stores nothing until its disk has room again"; !strings.Contains(body, want) {
		t.Fatalf("a secret's PUT after the key bucket's store failed: %d %s; want it refused at once, saying %q", code, body, want)
	}
	retryable503("a secret's PUT after the key bucket's store failed", true, code, body)
	if strings.Contains(body, string(planted)) {
		t.Fatalf("a secret's PUT on a full disk answers its value: %s", body)
	}

	// Most runs see a flush of the read models meet the end of the disk
	// before the log does; the read models must come back with it.
	t.Logf("on the full disk: %d starts, %d secrets, %d results acknowledged; the read models' store failed a write: %v",
		len(started), len(secrets), len(acked), strings.Contains(logs.String(), ".sst: no space left on device"))
	if code, body := c.Do("GET", "/health", ""); code != http.StatusServiceUnavailable {
		t.Errorf("/health on a full disk: %d %s; want 503", code, body)
	}
	// The workflows that ended last fall due for compaction on the full
	// disk, whose passes fail.
	testutil.Eventually(t, time.Minute, 200*time.Millisecond, func() error {
		if !strings.Contains(logs.String(), "compaction pass failed") {
			return errors.New("no compaction pass has met the full disk")
		}
		return nil
	})
	ended := map[string]bool{} // the workflows whose one task's result was acknowledged
	for _, wf := range acked {
		ended[wf] = true
	}
	due := 0
	for wf := range ended {
		if compacted(t, n, wf) != nil {
			due++
		}
	}
	t.Logf("on the full disk: %d of the %d workflows that ended await compaction", due, len(ended))
	if due == 0 {
		t.Fatal("every workflow that ended was compacted before the disk filled: the test shows nothing")
	}

	// Room again.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	var last string
	testutil.Eventually(t, 3*time.Minute, time.Second, func() error {
		if last == "" {
			code, body := start()
			if code != http.StatusOK {
				return fmt.Errorf("a start once the disk has room: %d %s", code, body)
			}
			last = body
		}
		// Its task may come after those of the workflows started before.
		for {
			code, ucode, wf := work()
			if code != http.StatusOK {
				break
			}
			if ucode != http.StatusOK {
				return fmt.Errorf("a task's result once the disk has room: %d", ucode)
			}
			if wf == last {
				break
			}
		}
		status := field(t, c.Must(http.StatusOK, "GET", "/api/workflow/"+last+"?includeTasks=false", ""), "status")
		if status != "COMPLETED" {
			return fmt.Errorf("the workflow started once the disk has room is %s", status)
		}
		return nil
	})

	if code, body := c.Do("GET", "/health", ""); code != http.StatusOK {
		t.Errorf("/health once the disk has room: %d %s; want 200", code, body)
	}

	// Everything answered before is there.
	for _, id := range started {
		if code, body := c.Do("GET", "/api/workflow/"+id+"?includeTasks=false", ""); code != http.StatusOK {
			t.Errorf("workflow %s, started with a 200: %d %s", id, code, body)
		}
	}
	for _, key := range secrets {
		if code, body := c.Do("GET", "/api/secrets/"+key+"/exists", ""); code != http.StatusOK || body != "true" {
			t.Errorf("secret %s, put with a 200: %d %s", key, code, body)
		}
	}
	for wf := range ended {
		testutil.Eventually(t, 2*time.Minute, 200*time.Millisecond, func() error {
			if err := compacted(t, n, wf); err != nil {
				return err
			}
			var view struct {
				Input struct {
					Secrets any `json:"_secrets"`
				} `json:"input"`
			}
			if err := json.Unmarshal([]byte(c.Must(http.StatusOK, "GET", "/api/workflow/"+wf+"?includeTasks=false", "")), &view); err != nil {
				return err
			}
			if got := view.Input.Secrets; got != masking.Mask {
				return fmt.Errorf("workflow %s, compacted, reads _secrets %v", wf, got)
			}
			return nil
		})
	}
	for taskID, wf := range acked {
		testutil.Eventually(t, 30*time.Second, 100*time.Millisecond, func() error {
			task := c.Must(http.StatusOK, "GET", "/api/tasks/"+taskID, "")
			if status := field(t, task, "status"); status != "COMPLETED" {
				return fmt.Errorf("task %s of workflow %s, its result acknowledged, is %s", taskID, wf, status)
			}
			return nil
		})
	}

	if err := n.Stop(testutil.Context(t, cfg.ShutdownTimeout)); err != nil {
		t.Fatalf("stop: %v", err)
	}
	for _, want := range []string{"the event log's store takes no writes", "the event log's store takes writes again"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("the log does not say %q", want)
		}
	}
	sc := leaktest.New(planted)
	sc.ScanDir(t, cfg.DataDir)
	sc.ScanPebble(t, cfg.PebbleDir())
	for _, h := range sc.Hits() {
		t.Errorf("the planted secret: %s", h)
	}
}

// compacted says why workflow wfID is not compacted: its log holds no
// workflow.compacted, or the secrets key its log recorded is still there.
func compacted(t *testing.T, n *node.Node, wfID string) error {
	t.Helper()
	ctx := testutil.Context(t, 30*time.Second)
	recs, err := n.Log().ReadSubject(ctx, "fv.wf."+wfID, 0)
	if err != nil {
		t.Fatal(err)
	}
	key, done := "", false
	for _, r := range recs {
		for _, env := range r.Events {
			ev, err := schemas.Default.Decode(env)
			if err != nil {
				t.Fatal(err)
			}
			switch ev := ev.(type) {
			case *schemas.SecretsSealed:
				key = ev.Key
			case *schemas.WorkflowCompacted:
				done = true
			}
		}
	}
	if key == "" {
		t.Fatalf("workflow %s recorded no secrets key", wfID)
	}
	if !done {
		return fmt.Errorf("workflow %s: no workflow.compacted in its log", wfID)
	}
	if _, err := n.Keys().DataKey(ctx, key); !errors.Is(err, secrets.ErrKeyDestroyed) {
		return fmt.Errorf("workflow %s, compacted: its secrets key %s is there (%v)", wfID, key, err)
	}
	return nil
}
