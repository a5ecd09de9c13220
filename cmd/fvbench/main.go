// Command fvbench measures flowvault against baselines taken in the same run
// on the same machine, and prints ratios. `make bench` runs it.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"
)

type section struct {
	name string
	run  func(ctx context.Context, o opts) error
}

type opts struct {
	duration time.Duration
	events   int
}

var sections = []section{
	{"eventlog", benchEventlog},
	{"replay", benchReplay},
}

func main() {
	var o opts
	only := flag.String("only", "", "comma-separated sections to run (default: all)")
	flag.DurationVar(&o.duration, "duration", 5*time.Second, "measuring time per throughput run")
	flag.IntVar(&o.events, "events", 1_000_000, "events for the replay benchmark")
	flag.Parse()
	ctx := context.Background()
	for _, s := range sections {
		if *only != "" && !strings.Contains(","+*only+",", ","+s.name+",") {
			continue
		}
		fmt.Printf("== %s\n", s.name)
		if err := s.run(ctx, o); err != nil {
			fmt.Fprintf(os.Stderr, "fvbench %s: %v\n", s.name, err)
			os.Exit(1)
		}
	}
}
