// Command bench measures Triggerflow end to end against its raw ceilings on
// the same servers and prints one table (`make bench`); the table is also
// written as JSON under -results. Method: docs/benchmarks.md.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/triggerflow/triggerflow/bench"
	"github.com/triggerflow/triggerflow/internal/toolpath"
)

func main() {
	var (
		jsEvents   = flag.Int("js-events", 2000, "closed-loop events for the raw JetStream row")
		tEvents    = flag.Int("events", 300, "closed-loop events for each Temporal and Triggerflow row")
		openEvents = flag.Int("open-events", 300, "most open-loop (latency) events per row")
		openMax    = flag.Duration("open-max", 15*time.Second, "longest open-loop run per row")
		openFrac   = flag.Float64("open-fraction", 0.5, "open-loop rate as a fraction of the row's closed-loop capacity")
		hotKeys    = flag.Int("hot-keys", 50, "keys of the hot rows")
		senders    = flag.Int("senders", 4, "concurrent SignalWithStart callers in the raw Temporal rows")
		quiet      = flag.Duration("quiet", 3*time.Second, "worker.quietPeriod of the Triggerflow worker")
		timeout    = flag.Duration("timeout", 3*time.Minute, "longest wait for one phase's deliveries")
		results    = flag.String("results", "bench/results", "directory for the JSON result")
		repo       = flag.String("repo", ".", "module root, to build the binaries from")
		only       = flag.String("only", "", "run only rows whose letter/key is listed: a,b,c,tc,th (default all)")
	)
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, *jsEvents, *tEvents, *openEvents, *openMax, *openFrac, *hotKeys, *senders, *quiet, *timeout, *results, *repo, *only); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, jsEvents, tEvents, openEvents int, openMax time.Duration, openFrac float64, hotKeys, senders int, quiet, timeout time.Duration, results, repo, only string) error {
	want := func(k string) bool {
		return only == "" || slices.Contains(strings.Split(only, ","), k)
	}
	dir, err := os.MkdirTemp("", "triggerflow-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	step := func(s string) {
		fmt.Fprintf(os.Stderr, "%s  %s (load %.2f)\n", time.Now().Format("15:04:05"), s, bench.Load1())
	}

	step("building watcher, ingest, worker")
	binDir := filepath.Join(dir, "bin")
	if err := bench.BuildBinaries(ctx, repo, binDir); err != nil {
		return err
	}
	step("starting NATS and the Temporal dev server")
	srv, err := bench.StartServers(ctx, dir, toolpath.TemporalCLI())
	if err != nil {
		return err
	}
	defer srv.Close()
	rec, err := bench.NewReceiver()
	if err != nil {
		return err
	}
	defer rec.Close()
	nc, err := nats.Connect(srv.NATS.ClientURL())
	if err != nil {
		return err
	}
	defer nc.Close()

	rep := &bench.Report{Time: time.Now(), Machine: bench.Machine(), Flags: map[string]string{}}
	flag.VisitAll(func(f *flag.Flag) { rep.Flags[f.Name] = f.Value.String() })
	tempSizes := bench.Sizes{Closed: tEvents, Open: openEvents, OpenMax: openMax, OpenFraction: openFrac, Timeout: timeout}
	measure := func(sc bench.Scenario, sz bench.Sizes) {
		step("row " + sc.Name)
		row := bench.Measure(ctx, rec, sc, sz)
		rep.Rows = append(rep.Rows, row)
		step(fmt.Sprintf("  %.1f deliveries/s, p50 %.1f ms, p99 %.1f ms %s", row.DeliveriesPerSec, row.P50ms, row.P99ms, row.Err))
	}

	if want("a") {
		sc, stopJS, err := bench.RawJetStream(ctx, nc, rec.URL+"/raw")
		if err != nil {
			return err
		}
		measure(sc, bench.Sizes{Closed: jsEvents, Open: jsEvents, OpenMax: openMax, OpenFraction: openFrac, Timeout: timeout})
		stopJS()
	}
	cold := bench.RawTemporal(srv.Client, false, hotKeys, senders)
	hot := bench.RawTemporal(srv.Client, true, hotKeys, senders)
	if want("b") || want("c") {
		w, err := bench.StartRawWorker(srv.Client, rec.URL+"/raw")
		if err != nil {
			return err
		}
		if want("b") {
			measure(cold, tempSizes)
		}
		if want("c") {
			measure(hot, tempSizes)
		}
		w.Stop()
	}
	if want("tc") || want("th") {
		step("starting the Triggerflow binaries")
		p, err := bench.StartPipeline(ctx, binDir, filepath.Join(dir, "pipeline"), srv.NATS.ClientURL(), srv.Temporal.FrontendHostPort(), rec.URL, quiet)
		if err != nil {
			return err
		}
		defer p.Close()
		if want("tc") {
			measure(p.Scenario(srv.Client, "triggerflow cold (SQLite)", 0), tempSizes)
		}
		if want("th") {
			measure(p.Scenario(srv.Client, fmt.Sprintf("triggerflow hot, %d keys (SQLite)", hotKeys), hotKeys), tempSizes)
		}
	}
	rep.ComputeRatios(cold.Name, hot.Name)
	fmt.Printf("\nTriggerflow bench %s — %s\n\n", rep.Time.UTC().Format(time.RFC3339), rep.Machine)
	if err := rep.WriteTable(os.Stdout); err != nil {
		return err
	}
	path, err := rep.WriteJSON(results)
	if err != nil {
		return err
	}
	fmt.Printf("\nwritten %s\n", path)
	return nil
}
