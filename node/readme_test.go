package node_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/flowvault/flowvault/internal/nodetest"
)

// readmeMetrics reads the metric names of the README's table of metrics.
// A cell may name siblings by their suffix after a full name
// (`flowvault_http_connections_open`, `_max`): the suffix replaces the
// full name's last word.
func readmeMetrics(t *testing.T) []string {
	t.Helper()
	readme, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	const header = "| metric | labels | what |"
	_, table, ok := strings.Cut(string(readme), "\n"+header+"\n")
	if !ok {
		t.Fatalf("README has no table %q", header)
	}
	code := regexp.MustCompile("`([^`]*)`")
	var names []string
	for _, line := range strings.Split(table, "\n") {
		if !strings.HasPrefix(line, "|") {
			break
		}
		if strings.HasPrefix(line, "| ---") {
			continue
		}
		cell, _, _ := strings.Cut(strings.TrimPrefix(line, "| "), " | ")
		prefix := ""
		for _, m := range code.FindAllStringSubmatch(cell, -1) {
			name := m[1]
			if strings.HasPrefix(name, "_") {
				name = prefix + name
			} else {
				prefix = name[:strings.LastIndex(name, "_")]
			}
			names = append(names, name)
		}
	}
	if len(names) == 0 {
		t.Fatal("README's table of metrics names no metric")
	}
	return names
}

// The README's table of metrics is what dashboards are built from: each
// metric it names is one the server registers, and each flowvault_ metric
// a started server exposes is in it.
func TestMetricsTableMatchesREADME(t *testing.T) {
	t.Parallel()
	n, _ := nodetest.Start(t)
	reg := n.Registry()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	exposed := map[string]bool{}
	for _, f := range families {
		if strings.HasPrefix(f.GetName(), "flowvault_") {
			exposed[f.GetName()] = true
		}
	}
	documented := map[string]bool{}
	for _, name := range readmeMetrics(t) {
		documented[name] = true
		if exposed[name] {
			continue
		}
		// A vector with no sample yet is not gathered, but registered: a
		// probe of the same name with another help text is refused.
		probe := prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: "README probe"})
		if err := reg.Register(probe); err == nil {
			reg.Unregister(probe)
			t.Errorf("README's table names %s, which the server does not register", name)
		}
	}
	for name := range exposed {
		if !documented[name] {
			t.Errorf("the server exposes %s, which the README's table of metrics does not name", name)
		}
	}
}
