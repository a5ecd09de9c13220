package executor

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/internal/logkey"
	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/flowvault/flowvault/workers"
)

// A taskToDomain entry may list fallbacks ("d1,d2,NO_DOMAIN"): Conductor
// puts the task in the first domain with active workers, those that polled
// its queue within the last 10 seconds, else in the last one listed. A
// queue's workers are seen three ways here: the polls this engine serves;
// the polls other engines serve, which each tells the others of
// (pollSeenSubject) at most every activeWindow/2 a queue, since a queue
// with no consumer (none dispatched to it yet, or swept idle) shows
// nothing of them; and the queue's consumer, whose pull requests waiting
// and last delivery show the workers that pull it over NATS. Consumers
// are read only for the decisions of workflows that list fallbacks, at
// most every activityScanEvery, so that no one else pays for them.

const (
	// activeWindow is how recently a queue's workers must have polled to
	// count as active (Conductor's activeWorkerLastPollTimeout).
	activeWindow = 10 * time.Second
	// activityScanEvery bounds how often an engine reads the queues'
	// consumers.
	activityScanEvery = 2 * time.Second
	// pollSeenSubject is where an engine tells the others of a queue it
	// serves polls of (core NATS, engines' account): the body is the
	// queue's consumer name.
	pollSeenSubject = "fv.engines.polled"
)

// activity knows when each queue's workers were last seen, by consumer
// name.
type activity struct {
	mu   sync.Mutex
	seen map[string]time.Time
	// told is when this engine last told the others of a queue's polls.
	told    map[string]time.Time
	scanned time.Time
	// scanning serializes scans: a decision that finds one running waits
	// for its answer instead of asking again.
	scanning sync.Mutex
}

func newActivity() *activity {
	return &activity{seen: map[string]time.Time{}, told: map[string]time.Time{}}
}

// polled records a poll this engine serves, and returns the queue's
// consumer name when the other engines are to be told of it.
func (a *activity) polled(taskType, domain string, now time.Time) (tell string) {
	consumer := workers.ConsumerName(taskType, domain)
	a.see(consumer, now)
	a.mu.Lock()
	defer a.mu.Unlock()
	if now.Sub(a.told[consumer]) < activeWindow/2 {
		return ""
	}
	if _, known := a.told[consumer]; !known && len(a.told) >= maxPollRecords {
		for c, t := range a.told {
			if now.Sub(t) > activeWindow {
				delete(a.told, c)
			}
		}
		if len(a.told) >= maxPollRecords {
			return ""
		}
	}
	a.told[consumer] = now
	return consumer
}

// listenForPolls records the polls other engines serve.
func (e *Executor) listenForPolls() error {
	sub, err := e.log.Conn().Subscribe(pollSeenSubject, func(m *nats.Msg) {
		e.activity.see(string(m.Data), e.cfg.Now())
	})
	if err != nil {
		return fmt.Errorf("subscribe %s: %w", pollSeenSubject, err)
	}
	e.unsubscribeAtStop(sub)
	return nil
}

func (a *activity) see(consumer string, at time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, known := a.seen[consumer]; !known && len(a.seen) >= maxPollRecords {
		// Polls name domains as they like: past the bound, forget the
		// queues seen longer ago than anything counts.
		for c, t := range a.seen {
			if at.Sub(t) > activeWindow {
				delete(a.seen, c)
			}
		}
		if len(a.seen) >= maxPollRecords {
			return
		}
	}
	if at.After(a.seen[consumer]) {
		a.seen[consumer] = at
	}
}

func (a *activity) active(taskType, domain string, now time.Time) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	seen, ok := a.seen[workers.ConsumerName(taskType, domain)]
	return ok && now.Sub(seen) <= activeWindow
}

// refreshActivity reads the queues' consumers when the last read (or try)
// is older than activityScanEvery. A failed read leaves what was known, and
// is not tried again sooner: the choice falls back to the last domain
// listed, as it would with no worker active.
func (e *Executor) refreshActivity(ctx context.Context, now time.Time) {
	a := e.activity
	a.scanning.Lock()
	defer a.scanning.Unlock()
	a.mu.Lock()
	fresh := now.Sub(a.scanned) < activityScanEvery
	if !fresh {
		a.scanned = now
	}
	a.mu.Unlock()
	if fresh {
		return
	}
	stream, err := e.disp.dispatchStream(ctx)
	if err != nil {
		e.cfg.Logger.Warn("task domains: queues not read", logkey.Err, err)
		return
	}
	lister := stream.ListConsumers(ctx)
	for info := range lister.Info() {
		if info.NumWaiting > 0 {
			a.see(info.Name, now)
		}
		if last := info.Delivered.Last; last != nil {
			a.see(info.Name, *last)
		}
	}
	if err := lister.Err(); err != nil {
		e.cfg.Logger.Warn("task domains: queues not read", logkey.Err, err)
	}
}

// decisionInput is what a decision of trig on w decides with: the task
// definitions, the log's bound of a record, the tasks' output cache and,
// for a workflow that lists fallback domains, the workers' activity read
// now.
func (e *Executor) decisionInput(ctx context.Context, w *engine.Workflow, trig engine.Trigger, now time.Time) engine.Input {
	in := engine.Input{State: w, Trigger: trig, Now: now, TaskDef: e.taskDefFunc(ctx), MaxRecordBytes: e.log.MaxRecordBytes(),
		CachedOutput: func(key string) (map[string]any, bool) { return e.cachedOutput(ctx, w, key, now.UnixMilli()) }}
	if e.conform != nil {
		in.CheckOutput = func(def *conductor.WorkflowDef, output map[string]any) error {
			return e.conform.Check(ctx, def.OutputSchema, output)
		}
	}
	t2d := map[string]string(nil)
	if w != nil {
		t2d = w.TaskToDomain
	} else if start, ok := trig.(engine.Start); ok {
		t2d = start.Request.TaskToDomain
	}
	if engine.HasFallbackDomains(t2d) {
		e.refreshActivity(ctx, now)
		in.ActiveDomain = func(taskType, domain string) bool { return e.activity.active(taskType, domain, now) }
	}
	return in
}
