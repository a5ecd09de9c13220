package node

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/flowvault/flowvault/projections"
	"github.com/flowvault/flowvault/projections/executions"
)

// lagScrapeTimeout bounds the stream lookups of one scrape: a log out of
// reach leaves the read models' lag out of that scrape rather than holding
// it (/health tells of the log).
const lagScrapeTimeout = 2 * time.Second

// readModelLag reports, when scraped, how many records each read model has
// yet to apply: a read model far behind its stream serves stale reads and
// holds up the writes that wait for it.
type readModelLag struct {
	runners []*projections.Runner
	desc    *prometheus.Desc
}

func newReadModelLag(runners []*projections.Runner) readModelLag {
	return readModelLag{runners: runners, desc: prometheus.NewDesc("flowvault_projection_lag_records",
		"Records of its stream a read model has yet to apply.", []string{"projection"}, nil)}
}

func (c readModelLag) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c readModelLag) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), lagScrapeTimeout)
	defer cancel()
	for _, r := range c.runners {
		lag, err := r.Lag(ctx)
		if err != nil {
			continue
		}
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(lag), r.Name())
	}
}

// loadGauges reports, when scraped, the load the executions read model
// counts (executions.Gauges): it folds the whole shared log, so every
// engine of a cluster reports the same values, each as far as its read
// model has got, and they are not to be summed over the engines.
type loadGauges struct {
	read                                   func(context.Context) (executions.Gauges, error)
	running, scheduled, timers, compaction *prometheus.Desc
}

func newLoadGauges(read func(context.Context) (executions.Gauges, error)) loadGauges {
	const cluster = " Cluster-wide, from this server's read model of the shared log: every server reports the same, not to be summed."
	return loadGauges{read: read,
		running: prometheus.NewDesc("flowvault_workflows_running",
			"Workflows not ended (RUNNING or PAUSED)."+cluster, nil, nil),
		scheduled: prometheus.NewDesc("flowvault_tasks_scheduled",
			"Tasks SCHEDULED and not yet taken: waiting for a worker, or for an engine's system worker."+cluster, nil, nil),
		timers: prometheus.NewDesc("flowvault_timers_pending",
			"Durable timers (workflow and task timeouts, WAITs, retry and callback delays, system task leases) the engines' timer loops wait for, a workflow's deadlines at one time counted once."+cluster, nil, nil),
		compaction: prometheus.NewDesc("flowvault_compaction_backlog_workflows",
			"Ended workflows whose secrets key awaits its erasure, or whose cached outputs found secret await their purge (compaction), those within --compaction-delay included."+cluster, nil, nil),
	}
}

func (c loadGauges) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.running
	ch <- c.scheduled
	ch <- c.timers
	ch <- c.compaction
}

func (c loadGauges) Collect(ch chan<- prometheus.Metric) {
	g, err := c.read(context.Background())
	if err != nil {
		return // the read model's store failing: /health says so
	}
	for _, m := range []struct {
		desc *prometheus.Desc
		v    int64
	}{{c.running, g.Running}, {c.scheduled, g.Scheduled}, {c.timers, g.Timers}, {c.compaction, g.Compaction}} {
		ch <- prometheus.MustNewConstMetric(m.desc, prometheus.GaugeValue, float64(m.v))
	}
}
