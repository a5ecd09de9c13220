// Command fvbench measures flowvault against baselines taken in the same run
// on the same machine, and prints ratios. `make bench` runs it.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/node"
)

type section struct {
	name string
	run  func(ctx context.Context, o opts) error
}

type opts struct {
	duration  time.Duration
	events    int
	workflows int
	// compactions is how many ended workflows the compaction benchmark
	// compacts.
	compactions int
	modes       []eventlog.FsyncMode
	// workloads are the engine benchmark's parts to run: nats, http,
	// secrets. The nats run is the baseline of the others, so it runs
	// whenever any does.
	// secrets (the secrets ratio runs nats too).
	workloads string
}

func (o opts) runs(workload string) bool {
	return strings.Contains(","+o.workloads+",", ","+workload+",")
}

var sections = []section{
	{"eventlog", benchEventlog},
	{"disk", benchDisk},
	{"replay", benchReplay},
	{"engine", benchEngine},
	{"compaction", benchCompaction},
	{"scaling", benchScaling},
}

func main() {
	var o opts
	only := flag.String("only", "", "comma-separated sections to run (default: all)")
	flag.DurationVar(&o.duration, "duration", 5*time.Second, "measuring time per throughput run")
	flag.IntVar(&o.events, "events", 1_000_000, "events for the replay benchmark")
	flag.IntVar(&o.workflows, "workflows", 20_000, "workflows for the engine benchmark")
	flag.IntVar(&o.compactions, "compactions", 10_000, "ended workflows for the compaction benchmark")
	modes := flag.String("fsync", "always,relaxed", "durability modes for the engine benchmark")
	flag.StringVar(&o.workloads, "workloads", "nats,http,secrets", "the engine benchmark's workloads: nats, http, secrets")
	flag.BoolVar(&groupCommit, "group-commit", true, "engine nodes write concurrent appends as atomic batches (fsync=always)")
	flag.DurationVar(&compactionDelay, "compaction-delay", compactionDelay, "engine nodes' compaction delay (set longer than a run, none in what it measures)")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	flag.Parse()
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		defer pprof.StopCPUProfile()
	}
	for _, m := range strings.Split(*modes, ",") {
		o.modes = append(o.modes, eventlog.FsyncMode(m))
	}
	// Everything is measured in a process tuned as `flowvault server` tunes
	// its own, the baselines included.
	node.DefaultConfig().TuneRuntime()
	ctx := context.Background()
	for _, s := range sections {
		if *only != "" && !strings.Contains(","+*only+",", ","+s.name+",") {
			continue
		}
		fmt.Printf("== %s\n", s.name)
		if err := s.run(ctx, o); err != nil {
			fmt.Fprintf(os.Stderr, "fvbench %s: %v\n", s.name, err)
			pprof.StopCPUProfile()
			os.Exit(1)
		}
	}
}
