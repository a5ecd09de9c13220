package executor

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/schemas/conductor"
)

type metrics struct {
	decisions  *prometheus.CounterVec
	decideDur  *prometheus.HistogramVec
	conflicts  prometheus.Counter
	effects    *prometheus.CounterVec
	dispatches prometheus.Counter
	matched    prometheus.Counter
	ticks      prometheus.Counter
	// reclaimed counts the system tasks taken back from processes no
	// longer present; reclaimScans the scans for them that ended.
	reclaimed    prometheus.Counter
	reclaimScans prometheus.Counter
	system       *prometheus.CounterVec
	limited      *prometheus.CounterVec
	cache        *prometheus.CounterVec
	// quotaRefusals counts, without naming whose, the workflows refused
	// by the quota on a principal's running workflows: principals are
	// too many for labels, and their names may be sensitive.
	quotaRefusals prometheus.Counter
	// started and ended count what the decisions this engine appended
	// did to workflows; ended is labelled by the terminal status only (four
	// values), never by workflow name: definitions are the users'.
	started prometheus.Counter
	ended   *prometheus.CounterVec
	// wfQueued counts the starts queued by their definition's
	// rateLimitConfig (not labelled by name, as above).
	wfQueued prometheus.Counter
	// unreadable counts the workflows whose recorded definition does not
	// parse, each once (stuckUnreadable), not labelled by name either.
	unreadable prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "flowvault", Subsystem: "engine", Name: "decisions_total",
			Help: "Decisions by trigger and outcome (appended, duplicate, noop, rejected, error).",
		}, []string{"trigger", "outcome"}),
		decideDur: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "flowvault", Subsystem: "engine", Name: "decision_seconds",
			Help:    "Time to load, decide and append, by trigger.",
			Buckets: prometheus.ExponentialBuckets(0.0002, 2, 16),
		}, []string{"trigger"}),
		conflicts: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "flowvault", Subsystem: "engine", Name: "append_conflicts_total",
			Help: "Appends lost to a concurrent writer of the same workflow (decided again).",
		}),
		effects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "flowvault", Subsystem: "engine", Name: "effect_failures_total",
			Help: "Effects that failed (they are retried by recovery).",
		}, []string{"effect"}),
		dispatches: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "flowvault", Subsystem: "engine", Name: "dispatches_total",
			Help: "Task dispatch messages published.",
		}),
		matched: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "flowvault", Subsystem: "engine", Name: "matched_takes_total",
			Help: "Tasks taken for a waiting poll by the decision that scheduled them, unannounced.",
		}),
		ticks: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "flowvault", Subsystem: "engine", Name: "timer_ticks_total",
			Help: "Workflows ticked because a deadline passed.",
		}),
		reclaimed: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "flowvault", Subsystem: "engine", Name: "system_tasks_reclaimed_total",
			Help: "System tasks taken back, before their lease's end, from engine processes no longer present.",
		}),
		reclaimScans: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "flowvault", Subsystem: "engine", Name: "reclaim_scans_total",
			Help: "Scans of the workflows due within the system task lease for the tasks of engine processes no longer present (at start, and when a process vanishes unless its clean stop said it held none).",
		}),
		system: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "flowvault", Subsystem: "engine", Name: "system_tasks_total",
			Help: "System tasks this engine ran (HTTP calls, events published, scripts), by type and the status they ended with.",
		}, []string{"type", "status"}),
		limited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "flowvault", Subsystem: "engine", Name: "limited_takes_total",
			Help: "Takes refused by a limit of the task's definition, by task type and limit (rateLimitPerFrequency, concurrentExecLimit).",
		}, []string{"task_type", "limit"}),
		cache: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "flowvault", Subsystem: "engine", Name: "task_cache_total",
			Help: "Lookups in the tasks' output cache (hit, miss, error), outputs stored (stored) and outputs dropped for a value found secret since (dropped).",
		}, []string{"result"}),
		quotaRefusals: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "flowvault", Subsystem: "engine", Name: "quota_refusals_total",
			Help: "Starts, restarts, retries and reruns refused because their principal has --max-running-workflows running.",
		}),
		started: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "flowvault", Subsystem: "engine", Name: "workflows_started_total",
			Help: "Workflows started (sub-workflows and scheduled runs included; not restarts, retries or reruns).",
		}),
		ended: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "flowvault", Subsystem: "engine", Name: "workflows_ended_total",
			Help: "Workflows that reached a terminal status (COMPLETED, FAILED, TIMED_OUT, TERMINATED), by that status; a workflow retried or restarted counts again when it ends again.",
		}, []string{"status"}),
		wfQueued: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "flowvault", Subsystem: "engine", Name: "workflows_queued_total",
			Help: "Workflow starts queued by their definition's rateLimitConfig: recorded RUNNING without tasks until a place is free.",
		}),
		unreadable: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "flowvault", Subsystem: "engine", Name: "unreadable_definitions_total",
			Help: "Workflows this process found stuck because their recorded definition does not parse, each counted once: they can only be terminated or removed.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.decisions, m.decideDur, m.conflicts, m.effects, m.dispatches, m.matched, m.ticks, m.reclaimed, m.reclaimScans, m.system, m.limited, m.cache,
			m.quotaRefusals, m.started, m.ended, m.wfQueued, m.unreadable)
	}
	return m
}

// appended counts the workflow starts and ends among the events of a
// decision the log stored.
func (m *metrics) appended(events []schemas.Event) {
	for _, ev := range events {
		switch ev := ev.(type) {
		case *schemas.WorkflowStarted:
			m.started.Inc()
		case *schemas.WorkflowStatusChanged:
			if conductor.WorkflowTerminal(ev.Status) {
				m.ended.WithLabelValues(ev.Status).Inc()
			}
		}
	}
}
