package eventlog

import "github.com/prometheus/client_golang/prometheus"

// metrics are the Log's Prometheus collectors. Labels never carry subjects:
// a subject holds a workflow id or secret name, and cardinality would explode.
type metrics struct {
	appends   *prometheus.CounterVec
	appendDur prometheus.Histogram
	bytes     prometheus.Counter
	batchSize prometheus.Histogram
	// storeRestarts counts the embedded store's restarts once its disk
	// had room again (recover.go).
	storeRestarts prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		appends: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "flowvault", Subsystem: "eventlog", Name: "appends_total",
			Help: "Appends by result: ok, duplicate, conflict, too_large, too_deep, error.",
		}, []string{"result"}),
		appendDur: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "flowvault", Subsystem: "eventlog", Name: "append_seconds",
			Help:    "Time from append call to acknowledgement.",
			Buckets: prometheus.ExponentialBuckets(0.0002, 2, 14),
		}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "flowvault", Subsystem: "eventlog", Name: "appended_bytes_total",
			Help: "Record bytes acknowledged by the log.",
		}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "flowvault", Subsystem: "eventlog", Name: "batch_appends",
			Help:    "Appends written together as one atomic batch (group commit).",
			Buckets: prometheus.ExponentialBuckets(2, 2, 8),
		}),
		storeRestarts: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "flowvault", Subsystem: "eventlog", Name: "store_restarts_total",
			Help: "Restarts of the embedded server's store, in the process, once its disk had room again after a failed write.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.appends, m.appendDur, m.bytes, m.batchSize, m.storeRestarts)
	}
	return m
}

// storeUsage reports the embedded server's store against its bound, as
// the server counts them at each scrape (Jsz): an operator sees the
// store fill before its writes are refused. Nothing while JetStream is
// down.
type storeUsage struct{ l *Log }

var (
	storeBytesDesc = prometheus.NewDesc("flowvault_eventlog_store_bytes",
		"Bytes the embedded NATS server's streams hold.", nil, nil)
	storeMaxDesc = prometheus.NewDesc("flowvault_eventlog_store_max_bytes",
		"The embedded NATS server's bound on what its streams hold (--nats-max-store, or 75% of the disk free at start): past it, writes are refused.", nil, nil)
)

func (u storeUsage) Describe(ch chan<- *prometheus.Desc) {
	ch <- storeBytesDesc
	ch <- storeMaxDesc
}

func (u storeUsage) Collect(ch chan<- prometheus.Metric) {
	jsz, err := u.l.ns.Jsz(nil)
	if err != nil || jsz.Disabled {
		return
	}
	ch <- prometheus.MustNewConstMetric(storeBytesDesc, prometheus.GaugeValue, float64(jsz.Store))
	ch <- prometheus.MustNewConstMetric(storeMaxDesc, prometheus.GaugeValue, float64(jsz.Config.MaxStore))
}
