package node

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/flowvault/flowvault/projections"
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
