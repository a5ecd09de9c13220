package eventlog

import "github.com/prometheus/client_golang/prometheus"

// metrics are the Log's Prometheus collectors. Labels never carry subjects:
// a subject holds a workflow id or secret name, and cardinality would explode.
type metrics struct {
	appends   *prometheus.CounterVec
	appendDur prometheus.Histogram
	bytes     prometheus.Counter
	batchSize prometheus.Histogram
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
	}
	if reg != nil {
		reg.MustRegister(m.appends, m.appendDur, m.bytes, m.batchSize)
	}
	return m
}
