package bench

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/triggerflow/triggerflow/internal/testenv"
	"github.com/triggerflow/triggerflow/internal/toolpath"
	"github.com/triggerflow/triggerflow/pgsource"
)

// Options are a bench run's settings, cmd/bench's flags.
type Options struct {
	JSEvents, Events, OpenEvents int
	OpenMax                      time.Duration
	OpenFraction                 float64
	// Sweep and Only are comma-separated, as the command line gives them.
	Sweep, Only      string
	HotKeys, Senders int
	Quiet, Timeout   time.Duration
	Results, Repo    string
	Postgres         bool
	ProfileDir       string
	ProfileSeconds   int
	Keep             bool
	Soak             time.Duration
	SoakRate         float64
	SoakKeys         int
	RawAttrs         bool
	// Tenants and TenantChanges size the tenants row.
	Tenants, TenantChanges int
	// LargeDocBytes is the document size of the tl and tli rows.
	LargeDocBytes int
	// Flags is the command line the report records.
	Flags map[string]string
	// Out receives the table, Progress the steps as they happen. They
	// default to stdout and stderr.
	Out, Progress io.Writer
}

// RowKeys are the -only keys, in the order the rows run.
var RowKeys = []string{"a", "b", "c", "tc", "th", "tl", "tli", "pc", "ph", "tenants"}

// temporalRows are the rows that need the Temporal dev server and the
// receiver (all but tenants).
var temporalRows = []string{"a", "b", "c", "tc", "th", "tl", "tli", "pc", "ph"}

// RegisterFlags defines o's flags on fs, each with its default.
func (o *Options) RegisterFlags(fs *flag.FlagSet) {
	fs.IntVar(&o.JSEvents, "js-events", 2000, "closed-loop events for the raw JetStream row")
	fs.IntVar(&o.Events, "events", 300, "closed-loop events for each Temporal and Triggerflow row")
	fs.IntVar(&o.OpenEvents, "open-events", 300, "most open-loop (latency) events per row")
	fs.DurationVar(&o.OpenMax, "open-max", 15*time.Second, "longest open-loop run per row")
	fs.Float64Var(&o.OpenFraction, "open-fraction", 0.5, "open-loop rate as a fraction of the row's closed-loop capacity")
	fs.StringVar(&o.Sweep, "sweep", "0.25,0.125", "further open-loop rates of the Temporal and Triggerflow rows, as comma-separated fractions of capacity (empty: none)")
	fs.IntVar(&o.HotKeys, "hot-keys", 50, "keys of the hot rows")
	fs.IntVar(&o.Senders, "senders", 4, "concurrent writers in the raw Temporal rows (SignalWithStart) and the PostgreSQL rows (commits)")
	fs.DurationVar(&o.Quiet, "quiet", 3*time.Second, "worker.quietPeriod of the Triggerflow worker")
	fs.DurationVar(&o.Timeout, "timeout", 3*time.Minute, "longest wait for one phase's deliveries")
	fs.StringVar(&o.Results, "results", "bench/results", "directory for the JSON result")
	fs.StringVar(&o.Repo, "repo", ".", "module root, to build the binaries from")
	fs.StringVar(&o.Only, "only", "", "run only the rows listed: "+strings.Join(RowKeys, ",")+" (default all; tc/th SQLite, pc/ph PostgreSQL; tl/tli SQLite, cold updates of -large-doc-bytes documents, images in the claim check's bucket (tl) or inline in the task (tli), no sweep; tenants: one multi-tenant watcher on SQLite and PostgreSQL, no Temporal)")
	fs.BoolVar(&o.Postgres, "postgres", true, "run the PostgreSQL rows (pc, ph, and tenants' PostgreSQL half) on a throwaway cluster; needs initdb and pg_ctl")
	fs.StringVar(&o.ProfileDir, "profile", "", "write CPU profiles of watcher, ingest and worker taken during the hot SQLite (th) closed loop, and heap profiles at its end, into this directory; with tenants, also of the tenants rows' watcher")
	fs.IntVar(&o.ProfileSeconds, "profile-seconds", 5, "length of the -profile CPU profiles, in seconds; choose at most the th closed loop's duration (printed)")
	fs.BoolVar(&o.Keep, "keep", false, "keep the working directory (config files and logs of the binaries and servers) and print its path")
	fs.DurationVar(&o.Soak, "soak", 0, "instead of the rows, run the SQLite pipeline at -soak-rate for this long and sample each binary's RSS every 30s (memory over time)")
	fs.Float64Var(&o.SoakRate, "soak-rate", 30, "events/s of the -soak run")
	fs.IntVar(&o.SoakKeys, "soak-keys", 200, "documents the -soak run's events cycle over")
	fs.BoolVar(&o.RawAttrs, "raw-attrs", false, "the raw Temporal rows (b, c) start workflows with Triggerflow's search attributes, memo and summary")
	fs.IntVar(&o.Tenants, "tenants", 1000, "tenants of the tenants row (5 triggers each)")
	fs.IntVar(&o.TenantChanges, "tenant-changes", 100000, "changes the tenants row commits before starting its watcher, spread over every tenant")
	fs.IntVar(&o.LargeDocBytes, "large-doc-bytes", 100<<10, fmt.Sprintf("document size of the tl and tli rows, in bytes (%d to %d: above the default publisher.imageThreshold, and two fit an inline task within NATS' 1 MiB max_payload)", minLargeDocBytes, maxLargeDocBytes))
}

// want reports whether row k runs.
func (o Options) want(k string) bool {
	if o.Soak > 0 {
		return false // a soak run measures no rows
	}
	if !o.Postgres && (k == "pc" || k == "ph") {
		return false
	}
	return o.Only == "" || slices.Contains(strings.Split(o.Only, ","), k)
}

// wantAny reports whether any of the rows ks runs.
func (o Options) wantAny(ks []string) bool {
	return slices.ContainsFunc(ks, o.want)
}

// check refuses options that would fail only after minutes of set-up, and
// returns the sweep's fractions.
func (o Options) check() (sweep []float64, err error) {
	for k := range strings.SplitSeq(o.Only, ",") {
		if k != "" && !slices.Contains(RowKeys, k) {
			return nil, fmt.Errorf("-only: unknown row %q (rows: %s)", k, strings.Join(RowKeys, ","))
		}
	}
	if o.ProfileDir != "" && !o.want("th") && !o.want("tenants") {
		return nil, errors.New("-profile profiles the hot SQLite row and the tenants rows: include th or tenants in -only")
	}
	if o.Tenants < 1 || o.TenantChanges < 1 {
		return nil, errors.New("-tenants and -tenant-changes must be at least 1")
	}
	if (o.want("tl") || o.want("tli")) && (o.LargeDocBytes < minLargeDocBytes || o.LargeDocBytes > maxLargeDocBytes) {
		return nil, fmt.Errorf("-large-doc-bytes must be from %d (above the default publisher.imageThreshold) to %d (two images in an inline task within NATS' 1 MiB max_payload)", minLargeDocBytes, maxLargeDocBytes)
	}
	if sweep, err = parseSweep(o.Sweep); err != nil {
		return nil, err
	}
	if o.Soak > 0 && (o.SoakRate <= 0 || o.SoakKeys < 1) {
		return nil, errors.New("-soak needs -soak-rate above 0 and -soak-keys of at least 1")
	}
	if o.ProfileSeconds < 1 {
		return nil, errors.New("-profile-seconds must be at least 1")
	}
	return sweep, nil
}

func parseSweep(s string) ([]float64, error) {
	var sweep []float64
	for f := range strings.SplitSeq(s, ",") {
		if f == "" {
			continue
		}
		v, err := strconv.ParseFloat(f, 64)
		if err != nil || v <= 0 || v > 1 {
			return nil, fmt.Errorf("-sweep: %q is not a fraction in (0, 1]", f)
		}
		sweep = append(sweep, v)
	}
	if len(sweep) > len(SweepPhases) {
		return nil, fmt.Errorf("-sweep: at most %d rates", len(SweepPhases))
	}
	return sweep, nil
}

// run is one bench run: the servers every row shares and the report the
// rows fill.
type run struct {
	ctx   context.Context
	o     Options
	sizes Sizes // of the Temporal and Triggerflow rows
	dir   string
	// binDir holds the watcher, ingest and worker binaries.
	binDir string
	srv    *Servers
	// temporalUsed is set once a row group ran on the first dev server.
	temporalUsed bool
	rec          *Receiver
	rep          *Report
	pcfg         PipelineConfig
}

// Run measures the rows o selects, or soaks, prints the table and writes
// it as JSON under o.Results.
func Run(ctx context.Context, o Options) error {
	if o.Out == nil {
		o.Out = os.Stdout
	}
	if o.Progress == nil {
		o.Progress = os.Stderr
	}
	sweep, err := o.check()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "triggerflow-bench-")
	if err != nil {
		return err
	}
	if o.Keep {
		defer fmt.Fprintln(o.Progress, "bench: working directory kept:", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	r := &run{ctx: ctx, o: o, dir: dir, rep: &Report{Time: time.Now(), Machine: Machine(), Flags: o.Flags},
		sizes: Sizes{Closed: o.Events, Open: o.OpenEvents, OpenMax: o.OpenMax, OpenFraction: o.OpenFraction, Timeout: o.Timeout, Sweep: sweep}}
	return r.run()
}

func (r *run) run() error {
	// PostgreSQL first: a machine without it fails in seconds, not after
	// the other rows.
	var pg *testenv.PostgresServer
	if r.o.want("pc") || r.o.want("ph") || r.o.want("tenants") && r.o.Postgres {
		var err error
		if pg, err = r.startPostgres(); err != nil {
			return err
		}
		defer r.stopPostgres(pg)
	}
	r.step("building watcher, ingest, worker")
	r.binDir = filepath.Join(r.dir, "bin")
	if err := BuildBinaries(r.ctx, r.o.Repo, r.binDir); err != nil {
		return err
	}
	if r.o.Soak > 0 || r.o.wantAny(temporalRows) {
		if err := r.sharedRows(pg); err != nil {
			return err
		}
		if r.o.Soak > 0 {
			return nil
		}
	}
	// The tenants rows need neither Temporal nor the receiver: they run
	// last, once those stopped, and leave the bench process's peak RSS,
	// which the raw rows report, alone.
	if r.o.want("tenants") {
		if err := r.tenantsRows(pg); err != nil {
			return err
		}
	}
	return r.report()
}

func (r *run) step(s string) {
	fmt.Fprintf(r.o.Progress, "%s  %s (load %.2f)\n", time.Now().Format("15:04:05"), s, Load1())
}

func (r *run) startPostgres() (*testenv.PostgresServer, error) {
	r.step("starting PostgreSQL (wal_level=logical)")
	pg, err := testenv.StartPostgres(r.ctx, slog.New(slog.NewTextHandler(r.o.Progress, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if mt, ok := errors.AsType[*testenv.MissingToolError](err); ok {
		return nil, fmt.Errorf("the PostgreSQL rows need PostgreSQL's server binaries: %w; or pass -postgres=false to skip those rows", mt)
	}
	if err != nil {
		return nil, fmt.Errorf("starting PostgreSQL: %w", err)
	}
	return pg, nil
}

// stopPostgres stops the cluster, keeping its log with -keep.
func (r *run) stopPostgres(pg *testenv.PostgresServer) {
	if r.o.Keep {
		if b, err := os.ReadFile(pg.LogFile()); err == nil {
			_ = os.WriteFile(filepath.Join(r.dir, "postgres.log"), b, 0o644)
		}
	}
	if err := pg.Close(); err != nil {
		fmt.Fprintln(r.o.Progress, "bench: stopping PostgreSQL:", err)
	}
}

// sharedRows starts the servers the Temporal rows share, soaks or
// measures those rows, and stops the servers.
func (r *run) sharedRows(pg *testenv.PostgresServer) error {
	stop, err := r.startShared()
	if err != nil {
		return err
	}
	defer stop()
	if r.o.Soak > 0 {
		return r.soak()
	}
	return r.rows(pg)
}

// startShared starts what every row but tenants uses: NATS, the Temporal
// dev server and the receiver.
func (r *run) startShared() (stop func(), err error) {
	r.step("starting NATS and the Temporal dev server")
	if r.srv, err = StartServers(r.ctx, r.dir, toolpath.TemporalCLI()); err != nil {
		return nil, err
	}
	if r.rec, err = NewReceiver(); err != nil {
		r.srv.Close()
		return nil, err
	}
	r.pcfg = PipelineConfig{
		BinDir: r.binDir, NATSURL: r.srv.NATS.ClientURL(), TemporalHostPort: r.srv.Temporal.FrontendHostPort(),
		ReceiverURL: r.rec.URL, Quiet: r.o.Quiet, Senders: r.o.Senders,
	}
	return func() { _ = r.rec.Close(); r.srv.Close() }, nil
}

// pipeline returns the pipeline configuration of one source, its files
// under name.
func (r *run) pipeline(name string) PipelineConfig {
	cfg := r.pcfg
	cfg.Dir = filepath.Join(r.dir, name)
	return cfg
}

// soak runs the SQLite pipeline at a fixed rate instead of the rows.
func (r *run) soak() error {
	r.step("starting the Triggerflow binaries (SQLite)")
	p, err := StartPipeline(r.ctx, r.pipeline("pipeline-soak"))
	if err != nil {
		return err
	}
	defer p.Close()
	sc, err := p.Scenario(r.ctx, r.srv.Client, fmt.Sprintf("triggerflow soak, %d keys (SQLite)", r.o.SoakKeys), r.o.SoakKeys)
	if err != nil {
		return err
	}
	r.step(fmt.Sprintf("soak: %.1f events/s for %s", r.o.SoakRate, r.o.Soak))
	res := Soak(r.ctx, r.rec, sc, p.CurrentRSS, r.o.SoakRate, r.o.Soak, 30*time.Second, r.o.Timeout)
	r.rep.Soak = &res
	fmt.Fprintln(r.o.Out)
	return r.write(res.WriteTable)
}

// rows measures the raw ceilings, then Triggerflow on SQLite and, with pg,
// on PostgreSQL.
func (r *run) rows(pg *testenv.PostgresServer) error {
	if err := r.rawRows(); err != nil {
		return err
	}
	if err := r.triggerflowRows("SQLite", "tc", "th", r.pipeline("pipeline-sqlite"), r.o.ProfileDir != ""); err != nil {
		return err
	}
	if err := r.largeRows(); err != nil {
		return err
	}
	if pg == nil {
		return nil
	}
	cfg := r.pipeline("pipeline-postgres")
	cfg.PostgresDSN = pg.DSN()
	var err error
	if cfg.PostgresPID, err = pg.PID(); err != nil {
		return err
	}
	if err := r.triggerflowRows("PostgreSQL", "pc", "ph", cfg, false); err != nil {
		return err
	}
	if r.o.want("pc") || r.o.want("ph") {
		// The tenants row counts the cluster's slots: only its own may
		// be left.
		return dropSlot(r.ctx, pg.DSN(), pgsource.SlotName(tfTenant))
	}
	return nil
}

func (r *run) measure(sc Scenario, sz Sizes) Row {
	r.step("row " + sc.Name)
	row := Measure(r.ctx, r.rec, sc, sz)
	r.rep.Rows = append(r.rep.Rows, row)
	r.step(fmt.Sprintf("  %.1f deliveries/s, p50 %.1f ms, p99 %.1f ms %s", row.DeliveriesPerSec, row.P50ms, row.P99ms, row.Err))
	return row
}

// rawRows measures a plain JetStream consumer (a) and raw Temporal with
// cold (b) and hot (c) keys.
func (r *run) rawRows() error {
	if r.o.want("a") {
		if err := r.rawJetStreamRow(); err != nil {
			return err
		}
	}
	if !r.o.want("b") && !r.o.want("c") {
		return nil
	}
	if err := r.freshTemporal(); err != nil {
		return err
	}
	w, err := StartRawWorker(r.srv.Client, r.rec.URL+"/raw")
	if err != nil {
		return err
	}
	defer w.Stop()
	if r.o.want("b") {
		r.measure(r.rawTemporal(false), r.sizes)
	}
	if r.o.want("c") {
		r.measure(r.rawTemporal(true), r.sizes)
	}
	return nil
}

// freshTemporal gives the next group of rows a Temporal dev server of its
// own; see Servers.FreshTemporal. The first group gets the one
// startShared started.
func (r *run) freshTemporal() error {
	if r.srv.runs == 1 && !r.temporalUsed {
		r.temporalUsed = true
		return nil
	}
	r.step("starting a fresh Temporal dev server")
	return r.srv.FreshTemporal(r.ctx)
}

func (r *run) rawTemporal(hot bool) Scenario {
	return RawTemporal(r.srv.Client, hot, r.o.HotKeys, r.o.Senders, r.o.RawAttrs)
}

func (r *run) rawJetStreamRow() error {
	nc, err := nats.Connect(r.srv.NATS.ClientURL())
	if err != nil {
		return err
	}
	defer nc.Close()
	sc, stop, err := RawJetStream(r.ctx, nc, r.rec.URL+"/raw")
	if err != nil {
		return err
	}
	defer stop()
	r.measure(sc, Sizes{Closed: r.o.JSEvents, Open: r.o.JSEvents, OpenMax: r.o.OpenMax, OpenFraction: r.o.OpenFraction, Timeout: r.o.Timeout})
	return nil
}

// triggerflowRows measures the cold and hot rows of one source on fresh
// binaries, so peak RSS is per source. The pipeline stops before the next
// source's starts, so two ingests never share the durable consumer nor two
// workers the task queue.
func (r *run) triggerflowRows(source, cold, hot string, cfg PipelineConfig, profile bool) error {
	if !r.o.want(cold) && !r.o.want(hot) {
		return nil
	}
	if err := r.freshTemporal(); err != nil {
		return err
	}
	r.step("starting the Triggerflow binaries (" + source + ")")
	cfg.Pprof = profile
	p, err := StartPipeline(r.ctx, cfg)
	if err != nil {
		return err
	}
	defer p.Close()
	if r.o.want(cold) {
		sc, err := p.Scenario(r.ctx, r.srv.Client, fmt.Sprintf("triggerflow cold (%s)", source), 0)
		if err != nil {
			return err
		}
		r.measure(sc, r.sizes)
	}
	if !r.o.want(hot) {
		return nil
	}
	sc, err := p.Scenario(r.ctx, r.srv.Client, fmt.Sprintf("triggerflow hot, %d keys (%s)", r.o.HotKeys, source), r.o.HotKeys)
	if err != nil {
		return err
	}
	if profile {
		return r.profiledRow(p, sc)
	}
	r.measure(sc, r.sizes)
	return nil
}

// profiledRow measures sc while taking CPU profiles of the binaries over
// the start of its closed loop, then heap profiles.
func (r *run) profiledRow(p *Pipeline, sc Scenario) error {
	var cpuFiles []string
	var cpuErr error
	sc.DuringClosed = func(ctx context.Context) func() {
		done := make(chan struct{})
		go func() {
			defer close(done)
			cpuFiles, cpuErr = p.Profile(ctx, fmt.Sprintf("/debug/pprof/profile?seconds=%d", r.o.ProfileSeconds), r.o.ProfileDir, "cpu")
		}()
		return func() { <-done }
	}
	row := r.measure(sc, r.sizes)
	if row.DeliveriesPerSec > 0 {
		loop := float64(row.Events) / row.DeliveriesPerSec
		hint := ""
		if loop < float64(r.o.ProfileSeconds) {
			hint = "; the loop was shorter: raise -events or lower -profile-seconds"
		}
		r.step(fmt.Sprintf("  CPU profiles cover the first %d s of a %.1f s closed loop%s", r.o.ProfileSeconds, loop, hint))
	}
	heapFiles, heapErr := p.Profile(r.ctx, "/debug/pprof/heap?gc=1", r.o.ProfileDir, "heap")
	if err := errors.Join(cpuErr, heapErr); err != nil {
		return err
	}
	r.step("  profiles written: " + strings.Join(append(cpuFiles, heapFiles...), ", "))
	return nil
}

// report computes the ratios to the raw ceilings and writes the table.
func (r *run) report() error {
	// The ceilings' names only: no client (the servers may not have run).
	cold, hot := RawTemporal(nil, false, r.o.HotKeys, r.o.Senders, r.o.RawAttrs), RawTemporal(nil, true, r.o.HotKeys, r.o.Senders, r.o.RawAttrs)
	r.rep.ComputeRatios(cold.Name, hot.Name)
	r.rep.AddRatio(largeRowName(false, r.o.LargeDocBytes), largeRowName(true, r.o.LargeDocBytes))
	fmt.Fprintf(r.o.Out, "\nTriggerflow bench %s — %s\n\n", r.rep.Time.UTC().Format(time.RFC3339), r.rep.Machine)
	return r.write(r.rep.WriteTable)
}

// write prints a run's table and writes its JSON under o.Results.
func (r *run) write(table func(io.Writer) error) error {
	if err := table(r.o.Out); err != nil {
		return err
	}
	path, err := r.rep.WriteJSON(r.o.Results)
	if err != nil {
		return err
	}
	fmt.Fprintf(r.o.Out, "\nwritten %s\n", path)
	return nil
}
