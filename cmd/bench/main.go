// Command bench measures Triggerflow end to end against its raw ceilings on
// the same servers and prints one table (`make bench`); the table is also
// written as JSON under -results. Method: docs/benchmarks.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/triggerflow/triggerflow/bench"
	"github.com/triggerflow/triggerflow/internal/testenv"
	"github.com/triggerflow/triggerflow/internal/toolpath"
	"github.com/triggerflow/triggerflow/service"
)

// options are the command's flags.
type options struct {
	jsEvents, events, openEvents int
	openMax                      time.Duration
	openFraction                 float64
	sweep                        string
	hotKeys, senders             int
	quiet, timeout               time.Duration
	results, repo, only          string
	postgres                     bool
	profileDir                   string
	profileSeconds               int
	keep                         bool
	soak                         time.Duration
	soakRate                     float64
	soakKeys                     int
	rawAttrs                     bool
}

// rowKeys are the -only keys, in the order the rows run.
var rowKeys = []string{"a", "b", "c", "tc", "th", "pc", "ph"}

func main() {
	var o options
	flag.IntVar(&o.jsEvents, "js-events", 2000, "closed-loop events for the raw JetStream row")
	flag.IntVar(&o.events, "events", 300, "closed-loop events for each Temporal and Triggerflow row")
	flag.IntVar(&o.openEvents, "open-events", 300, "most open-loop (latency) events per row")
	flag.DurationVar(&o.openMax, "open-max", 15*time.Second, "longest open-loop run per row")
	flag.Float64Var(&o.openFraction, "open-fraction", 0.5, "open-loop rate as a fraction of the row's closed-loop capacity")
	flag.StringVar(&o.sweep, "sweep", "0.25,0.125", "further open-loop rates of the Temporal and Triggerflow rows, as comma-separated fractions of capacity (empty: none)")
	flag.IntVar(&o.hotKeys, "hot-keys", 50, "keys of the hot rows")
	flag.IntVar(&o.senders, "senders", 4, "concurrent writers in the raw Temporal rows (SignalWithStart) and the PostgreSQL rows (commits)")
	flag.DurationVar(&o.quiet, "quiet", 3*time.Second, "worker.quietPeriod of the Triggerflow worker")
	flag.DurationVar(&o.timeout, "timeout", 3*time.Minute, "longest wait for one phase's deliveries")
	flag.StringVar(&o.results, "results", "bench/results", "directory for the JSON result")
	flag.StringVar(&o.repo, "repo", ".", "module root, to build the binaries from")
	flag.StringVar(&o.only, "only", "", "run only the rows listed: "+strings.Join(rowKeys, ",")+" (default all; tc/th SQLite, pc/ph PostgreSQL)")
	flag.BoolVar(&o.postgres, "postgres", true, "run the PostgreSQL rows (pc, ph) on a throwaway cluster; needs initdb and pg_ctl")
	flag.StringVar(&o.profileDir, "profile", "", "write CPU profiles of watcher, ingest and worker taken during the hot SQLite (th) closed loop, and heap profiles at its end, into this directory")
	flag.IntVar(&o.profileSeconds, "profile-seconds", 5, "length of the -profile CPU profiles, in seconds; choose at most the th closed loop's duration (printed)")
	flag.BoolVar(&o.keep, "keep", false, "keep the working directory (config files and logs of the binaries and servers) and print its path")
	flag.DurationVar(&o.soak, "soak", 0, "instead of the rows, run the SQLite pipeline at -soak-rate for this long and sample each binary's RSS every 30s (memory over time)")
	flag.Float64Var(&o.soakRate, "soak-rate", 30, "events/s of the -soak run")
	flag.IntVar(&o.soakKeys, "soak-keys", 200, "documents the -soak run's events cycle over")
	flag.BoolVar(&o.rawAttrs, "raw-attrs", false, "the raw Temporal rows (b, c) start workflows with Triggerflow's search attributes, memo and summary")
	version := flag.Bool("version", false, "print the version and exit")
	flag.Parse()
	if *version {
		fmt.Println(service.Build().String("bench"))
		return
	}
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "bench: unexpected argument %q: bench takes flags only (see -h)\n", flag.Arg(0))
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, o options) error {
	for k := range strings.SplitSeq(o.only, ",") {
		if k != "" && !slices.Contains(rowKeys, k) {
			return fmt.Errorf("-only: unknown row %q (rows: %s)", k, strings.Join(rowKeys, ","))
		}
	}
	want := func(k string) bool {
		if o.soak > 0 {
			return false // a soak run measures no rows
		}
		if !o.postgres && (k == "pc" || k == "ph") {
			return false
		}
		return o.only == "" || slices.Contains(strings.Split(o.only, ","), k)
	}
	if o.profileDir != "" && !want("th") {
		return errors.New("-profile profiles the hot SQLite row: include th in -only")
	}
	var sweep []float64
	for f := range strings.SplitSeq(o.sweep, ",") {
		if f == "" {
			continue
		}
		v, err := strconv.ParseFloat(f, 64)
		if err != nil || v <= 0 || v > 1 {
			return fmt.Errorf("-sweep: %q is not a fraction in (0, 1]", f)
		}
		sweep = append(sweep, v)
	}
	if len(sweep) > len(bench.SweepPhases) {
		return fmt.Errorf("-sweep: at most %d rates", len(bench.SweepPhases))
	}
	if o.soak > 0 && (o.soakRate <= 0 || o.soakKeys < 1) {
		return errors.New("-soak needs -soak-rate above 0 and -soak-keys of at least 1")
	}
	if o.profileSeconds < 1 {
		return errors.New("-profile-seconds must be at least 1")
	}
	dir, err := os.MkdirTemp("", "triggerflow-bench-")
	if err != nil {
		return err
	}
	if o.keep {
		defer fmt.Fprintln(os.Stderr, "bench: working directory kept:", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	step := func(s string) {
		fmt.Fprintf(os.Stderr, "%s  %s (load %.2f)\n", time.Now().Format("15:04:05"), s, bench.Load1())
	}

	// PostgreSQL first: a machine without it fails in seconds, not after
	// the other rows.
	var pg *testenv.PostgresServer
	if want("pc") || want("ph") {
		step("starting PostgreSQL (wal_level=logical)")
		pg, err = testenv.StartPostgres(ctx, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
		if mt, ok := errors.AsType[*testenv.MissingToolError](err); ok {
			return fmt.Errorf("the PostgreSQL rows need PostgreSQL's server binaries: %w; or pass -postgres=false to skip those rows", mt)
		}
		if err != nil {
			return fmt.Errorf("starting PostgreSQL: %w", err)
		}
		defer func() {
			if o.keep {
				if b, err := os.ReadFile(pg.LogFile()); err == nil {
					_ = os.WriteFile(filepath.Join(dir, "postgres.log"), b, 0o644)
				}
			}
			if err := pg.Close(); err != nil {
				fmt.Fprintln(os.Stderr, "bench: stopping PostgreSQL:", err)
			}
		}()
	}
	step("building watcher, ingest, worker")
	binDir := filepath.Join(dir, "bin")
	if err := bench.BuildBinaries(ctx, o.repo, binDir); err != nil {
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
	pcfg := bench.PipelineConfig{
		BinDir: binDir, NATSURL: srv.NATS.ClientURL(), TemporalHostPort: srv.Temporal.FrontendHostPort(),
		ReceiverURL: rec.URL, Quiet: o.quiet, Senders: o.senders,
	}
	if o.soak > 0 {
		cfg := pcfg
		cfg.Dir = filepath.Join(dir, "pipeline-soak")
		step("starting the Triggerflow binaries (SQLite)")
		p, err := bench.StartPipeline(ctx, cfg)
		if err != nil {
			return err
		}
		defer p.Close()
		sc, err := p.Scenario(ctx, srv.Client, fmt.Sprintf("triggerflow soak, %d keys (SQLite)", o.soakKeys), o.soakKeys)
		if err != nil {
			return err
		}
		step(fmt.Sprintf("soak: %.1f events/s for %s", o.soakRate, o.soak))
		res := bench.Soak(ctx, rec, sc, p.CurrentRSS, o.soakRate, o.soak, 30*time.Second, o.timeout)
		rep.Soak = &res
		fmt.Println()
		return writeReport(rep, o.results, res.WriteTable)
	}
	tempSizes := bench.Sizes{Closed: o.events, Open: o.openEvents, OpenMax: o.openMax, OpenFraction: o.openFraction, Timeout: o.timeout, Sweep: sweep}
	measure := func(sc bench.Scenario, sz bench.Sizes) bench.Row {
		step("row " + sc.Name)
		row := bench.Measure(ctx, rec, sc, sz)
		rep.Rows = append(rep.Rows, row)
		step(fmt.Sprintf("  %.1f deliveries/s, p50 %.1f ms, p99 %.1f ms %s", row.DeliveriesPerSec, row.P50ms, row.P99ms, row.Err))
		return row
	}

	if want("a") {
		sc, stopJS, err := bench.RawJetStream(ctx, nc, rec.URL+"/raw")
		if err != nil {
			return err
		}
		measure(sc, bench.Sizes{Closed: o.jsEvents, Open: o.jsEvents, OpenMax: o.openMax, OpenFraction: o.openFraction, Timeout: o.timeout})
		stopJS()
	}
	cold := bench.RawTemporal(srv.Client, false, o.hotKeys, o.senders, o.rawAttrs)
	hot := bench.RawTemporal(srv.Client, true, o.hotKeys, o.senders, o.rawAttrs)
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

	// Each source gets fresh binaries, so peak RSS is per source, and the
	// first pipeline is stopped before the next starts, so two ingests
	// never share the durable consumer nor two workers the task queue.
	tfRows := func(source, cold, hot string, cfg bench.PipelineConfig, profile bool) error {
		if !want(cold) && !want(hot) {
			return nil
		}
		step("starting the Triggerflow binaries (" + source + ")")
		cfg.Pprof = profile
		p, err := bench.StartPipeline(ctx, cfg)
		if err != nil {
			return err
		}
		defer p.Close()
		if want(cold) {
			sc, err := p.Scenario(ctx, srv.Client, fmt.Sprintf("triggerflow cold (%s)", source), 0)
			if err != nil {
				return err
			}
			measure(sc, tempSizes)
		}
		if want(hot) {
			sc, err := p.Scenario(ctx, srv.Client, fmt.Sprintf("triggerflow hot, %d keys (%s)", o.hotKeys, source), o.hotKeys)
			if err != nil {
				return err
			}
			var cpuFiles []string
			var cpuErr error
			if profile {
				sc.DuringClosed = func(ctx context.Context) func() {
					done := make(chan struct{})
					go func() {
						defer close(done)
						cpuFiles, cpuErr = p.Profile(ctx, fmt.Sprintf("/debug/pprof/profile?seconds=%d", o.profileSeconds), o.profileDir, "cpu")
					}()
					return func() { <-done }
				}
			}
			row := measure(sc, tempSizes)
			if profile {
				if row.DeliveriesPerSec > 0 {
					loop := float64(row.Events) / row.DeliveriesPerSec
					hint := ""
					if loop < float64(o.profileSeconds) {
						hint = "; the loop was shorter: raise -events or lower -profile-seconds"
					}
					step(fmt.Sprintf("  CPU profiles cover the first %d s of a %.1f s closed loop%s", o.profileSeconds, loop, hint))
				}
				heapFiles, heapErr := p.Profile(ctx, "/debug/pprof/heap?gc=1", o.profileDir, "heap")
				if err := errors.Join(cpuErr, heapErr); err != nil {
					return err
				}
				step("  profiles written: " + strings.Join(append(cpuFiles, heapFiles...), ", "))
			}
		}
		return nil
	}
	cfg := pcfg
	cfg.Dir = filepath.Join(dir, "pipeline-sqlite")
	if err := tfRows("SQLite", "tc", "th", cfg, o.profileDir != ""); err != nil {
		return err
	}
	if pg != nil {
		cfg := pcfg
		cfg.Dir = filepath.Join(dir, "pipeline-postgres")
		cfg.PostgresDSN = pg.DSN()
		if cfg.PostgresPID, err = pg.PID(); err != nil {
			return err
		}
		if err := tfRows("PostgreSQL", "pc", "ph", cfg, false); err != nil {
			return err
		}
	}

	rep.ComputeRatios(cold.Name, hot.Name)
	fmt.Printf("\nTriggerflow bench %s — %s\n\n", rep.Time.UTC().Format(time.RFC3339), rep.Machine)
	return writeReport(rep, o.results, rep.WriteTable)
}

// writeReport prints a run's table and writes its JSON under dir.
func writeReport(rep *bench.Report, dir string, table func(io.Writer) error) error {
	if err := table(os.Stdout); err != nil {
		return err
	}
	path, err := rep.WriteJSON(dir)
	if err != nil {
		return err
	}
	fmt.Printf("\nwritten %s\n", path)
	return nil
}
