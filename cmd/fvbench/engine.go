package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"golang.org/x/time/rate"

	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/node"
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/flowvault/flowvault/workers"
)

const benchFlow = `{"name":"bench_three","version":1,"tasks":[
 {"name":"bench_a","taskReferenceName":"a","inputParameters":{"i":"${workflow.input.i}"}},
 {"name":"bench_b","taskReferenceName":"b","inputParameters":{"prev":"${a.output.v}"}},
 {"name":"bench_c","taskReferenceName":"c","inputParameters":{"prev":"${b.output.v}"}}]}`

// engineRun is one node under load.
type engineRun struct {
	n       *node.Node
	base    string
	client  *http.Client
	mu      sync.Mutex
	started map[string]time.Time
	lat     []time.Duration
	done    atomic.Int64
	allDone chan struct{}
	want    int64
}

func startEngine(ctx context.Context, mode eventlog.FsyncMode) (*engineRun, func(), error) {
	dir, err := os.MkdirTemp("", "fvbench-engine")
	if err != nil {
		return nil, nil, err
	}
	cfg := node.DefaultConfig()
	cfg.DataDir, cfg.HTTPAddr, cfg.NATSListen, cfg.Fsync = filepath.Join(dir, "data"), "127.0.0.1:0", "127.0.0.1:0", string(mode)
	n, err := node.Start(ctx, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		os.RemoveAll(dir)
		return nil, nil, err
	}
	r := &engineRun{n: n, base: "http://" + n.HTTPAddr(), started: map[string]time.Time{},
		client: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}}}
	cleanup := func() {
		sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		n.Stop(sctx)
		os.RemoveAll(dir)
	}
	if err := r.post("/api/metadata/workflow?overwrite=true", benchFlow, nil); err != nil {
		cleanup()
		return nil, nil, err
	}
	return r, cleanup, nil
}

func (r *engineRun) post(path, body string, out *string) error {
	res, err := r.client.Post(r.base+path, "application/json", strings.NewReader(body))
	if err != nil {
		return err
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode >= 300 {
		return fmt.Errorf("POST %s: %d %s", path, res.StatusCode, b)
	}
	if out != nil {
		*out = string(b)
	}
	return nil
}

// watch records completions by listening to the workflow stream's subjects:
// a record holding workflow.status_changed COMPLETED ends a workflow.
func (r *engineRun) watch(nc *nats.Conn) error {
	sub, err := nc.Subscribe("fv.wf.>", func(m *nats.Msg) {
		if !bytes.Contains(m.Data, []byte("workflow.status_changed")) {
			return
		}
		envs, err := schemas.DecodeRecord(m.Data)
		if err != nil {
			return
		}
		for _, env := range envs {
			if env.Type != "workflow.status_changed" {
				continue
			}
			ev, err := schemas.Default.Decode(env)
			if err != nil || ev.(*schemas.WorkflowStatusChanged).Status != conductor.WorkflowCompleted {
				continue
			}
			now := time.Now()
			id := strings.TrimPrefix(m.Subject, "fv.wf.")
			r.mu.Lock()
			if t, ok := r.started[id]; ok {
				r.lat = append(r.lat, now.Sub(t))
				delete(r.started, id)
			}
			r.mu.Unlock()
			if r.done.Add(1) == r.want {
				close(r.allDone)
			}
		}
	})
	if err != nil {
		return err
	}
	// A core subscriber that falls behind loses messages; this one must not.
	return sub.SetPendingLimits(-1, -1)
}

func (r *engineRun) workers(ctx context.Context, nc *nats.Conn) error {
	h := func(_ context.Context, t *conductor.Task) (workers.Output, error) {
		prev, _ := t.InputData["prev"].(float64)
		return workers.Output{Data: map[string]any{"v": prev + 1}}, nil
	}
	for _, typ := range []string{"bench_a", "bench_b", "bench_c"} {
		w, err := workers.NewWorker(nc, workers.WorkerConfig{TaskType: typ, Concurrency: 256, PollWait: time.Second}, h)
		if err != nil {
			return err
		}
		go w.Run(ctx)
	}
	return nil
}

// load starts total workflows from 50 concurrent starters, at most perSec
// per second when perSec > 0, and waits for all of them to complete.
func (r *engineRun) load(total int, perSec float64) (time.Duration, error) {
	r.mu.Lock()
	r.lat, r.want, r.allDone = nil, int64(total), make(chan struct{})
	r.done.Store(0)
	r.mu.Unlock()
	var limiter *rate.Limiter
	if perSec > 0 {
		limiter = rate.NewLimiter(rate.Limit(perSec), 1)
	}
	var next atomic.Int64
	var firstErr atomic.Value
	begin := time.Now()
	var wg sync.WaitGroup
	for s := 0; s < 50; s++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > int64(total) {
					return
				}
				if limiter != nil {
					limiter.Wait(context.Background())
				}
				t0 := time.Now()
				var id string
				if err := r.post("/api/workflow/bench_three", fmt.Sprintf(`{"i":%d}`, i), &id); err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
				r.mu.Lock()
				r.started[id] = t0
				r.mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if err, _ := firstErr.Load().(error); err != nil {
		return 0, err
	}
	select {
	case <-r.allDone:
	case <-time.After(2 * time.Minute):
		r.mu.Lock()
		var stuck []string
		for id := range r.started {
			if len(stuck) == 5 {
				break
			}
			stuck = append(stuck, r.describe(id))
		}
		r.mu.Unlock()
		return 0, fmt.Errorf("only %d of %d workflows completed; some still open: %s", r.done.Load(), total, strings.Join(stuck, "; "))
	}
	return time.Since(begin), nil
}

// percentiles of the latencies recorded. A workflow can complete before
// its start request has answered and been recorded; those are not counted.
func (r *engineRun) percentiles() (p50, p99 time.Duration, n int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	l := slices.Clone(r.lat)
	if len(l) == 0 {
		return 0, 0, 0
	}
	slices.Sort(l)
	return l[len(l)/2], l[len(l)*99/100], len(l)
}

func benchEngine(ctx context.Context, o opts) error {
	for _, mode := range o.modes {
		r, cleanup, err := startEngine(ctx, mode)
		if err != nil {
			return err
		}
		nc, err := nats.Connect(r.n.Log().ClientURL())
		if err != nil {
			cleanup()
			return err
		}
		wctx, stopWorkers := context.WithCancel(ctx)
		if err := r.watch(nc); err == nil {
			err = r.workers(wctx, nc)
		}
		if err != nil {
			stopWorkers()
			cleanup()
			return err
		}
		if _, err := r.load(500, 0); err != nil { // warm up
			stopWorkers()
			cleanup()
			return err
		}
		took, err := r.load(o.workflows, 0)
		if err != nil {
			stopWorkers()
			cleanup()
			return err
		}
		tput := float64(o.workflows) / took.Seconds()
		p50, p99, _ := r.percentiles()
		fmt.Printf("fsync=%-7s %d workflows (3 SIMPLE tasks, NATS workers, 50 starters): %7.0f workflows/s  p50 %s  p99 %s  (saturated)\n",
			mode, o.workflows, tput, p50.Round(time.Millisecond), p99.Round(time.Millisecond))
		if mode == eventlog.FsyncAlways {
			half := tput / 2
			if _, err := r.load(int(half*10), half); err != nil {
				stopWorkers()
				cleanup()
				return err
			}
			p50, p99, _ = r.percentiles()
			fmt.Printf("fsync=%-7s at half load (%.0f workflows/s for 10s): p50 %s  p99 %s  (target p99 <= 100ms)\n",
				mode, half, p50.Round(time.Millisecond), p99.Round(time.Millisecond))
		}
		stopWorkers()
		nc.Close()
		cleanup()
	}
	return nil
}

// describe summarises a workflow's state for a failure message.
func (r *engineRun) describe(id string) string {
	w, err := r.n.Executions().Workflow(context.Background(), id)
	if err != nil {
		return id + ": " + err.Error()
	}
	var tasks []string
	for _, t := range w.Tasks {
		tasks = append(tasks, fmt.Sprintf("%s:%s(polls %d)", t.Ref, t.Status, t.PollCount))
	}
	return fmt.Sprintf("%s %s %v", id, w.Status, tasks)
}
