package daemon

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"go.temporal.io/sdk/testsuite"

	"github.com/triggerflow/triggerflow/authn"
	"github.com/triggerflow/triggerflow/config"
	"github.com/triggerflow/triggerflow/internal/receiver"
	"github.com/triggerflow/triggerflow/internal/service"
	"github.com/triggerflow/triggerflow/secrets"
	"github.com/triggerflow/triggerflow/trigger"
)

// The dev stack's defaults, which `triggerflow dev` shows as its flags'
// defaults. The tenant is the example triggers' tenant.
const (
	DevDataDir      = "data"
	DevTenant       = "demo"
	DevTriggers     = "examples/triggers"
	DevReceiverAddr = "127.0.0.1:8090"
)

// DevConfig configures the all-in-one dev stack. Zero fields take the
// documented defaults.
type DevConfig struct {
	// DataDir keeps everything between runs: NATS's store, Temporal's
	// SQLite file, the document store, secrets and keys. Defaults to
	// DevDataDir.
	DataDir string
	// Tenant is the watcher's tenant scope. Defaults to DevTenant.
	Tenant string
	// Triggers is the trigger file or directory. Defaults to DevTriggers.
	Triggers string
	// NATSURL points at an external NATS; empty embeds one on NATSPort
	// (default 4222; -1 picks a free port).
	NATSURL  string
	NATSPort int
	// TemporalHostPort points at an external Temporal (with Triggerflow's
	// search attributes registered); empty starts the dev server on
	// TemporalPort (default 7233) with its UI on TemporalUIPort (default
	// 8233; -1 disables it), using the Temporal CLI at TemporalCLI.
	TemporalHostPort string
	TemporalPort     int
	TemporalUIPort   int
	TemporalCLI      string
	// PostgresDSN watches a PostgreSQL database instead of the embedded
	// SQLite store.
	PostgresDSN string
	// ReceiverAddr is where the demo webhook receiver listens. Defaults to
	// DevReceiverAddr, where the example triggers deliver.
	ReceiverAddr string
	// WatcherAddr, IngestAddr and WorkerAddr are the services' ops
	// addresses. Default to 127.0.0.1:9464, :9465 and :9466.
	WatcherAddr, IngestAddr, WorkerAddr string
	// Out receives the banner and the receiver's lines. Defaults to stdout.
	Out io.Writer
	// Log configures the services' logs (on stderr). Defaults to text at
	// info, Temporal SDK at warn.
	Log config.Log
}

func (c DevConfig) withDefaults() DevConfig {
	c.DataDir = cmp.Or(c.DataDir, DevDataDir)
	c.Tenant = cmp.Or(c.Tenant, DevTenant)
	c.Triggers = cmp.Or(c.Triggers, DevTriggers)
	c.ReceiverAddr = cmp.Or(c.ReceiverAddr, DevReceiverAddr)
	c.WatcherAddr = cmp.Or(c.WatcherAddr, "127.0.0.1:9464")
	c.IngestAddr = cmp.Or(c.IngestAddr, "127.0.0.1:9465")
	c.WorkerAddr = cmp.Or(c.WorkerAddr, "127.0.0.1:9466")
	c.NATSPort = cmp.Or(c.NATSPort, 4222)
	c.TemporalPort = cmp.Or(c.TemporalPort, 7233)
	c.TemporalUIPort = cmp.Or(c.TemporalUIPort, 8233)
	if c.Out == nil {
		c.Out = os.Stdout
	}
	if c.Log.Format == "" {
		c.Log = config.Log{Format: config.LogText}
	}
	c.Log = c.Log.WithDefaults()
	return c
}

// DevStack is a running dev stack.
type DevStack struct {
	// Receiver is the demo receiver; tests read its deliveries.
	Receiver *receiver.Receiver
	// TemporalHostPort and NATSURL are where the stack's servers listen.
	TemporalHostPort, NATSURL string
	// ReceiverURL is the demo receiver's base URL.
	ReceiverURL string
}

// Dev runs the whole system in one process until ctx ends: NATS with
// JetStream, the Temporal dev server (UI included), the document store, the
// watcher, ingest and worker, and a demo receiver that verifies and prints
// every delivery. started, when set, is called once everything is ready.
func Dev(ctx context.Context, cfg DevConfig, started func(*DevStack)) error {
	cfg = cfg.withDefaults()
	log := service.NewLogger(cfg.Log, os.Stderr)
	if err := checkDevTriggers(cfg); err != nil {
		return err
	}
	stack, stop, err := startDevStack(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer stop()
	svcs, err := devServices(cfg, stack)
	if err != nil {
		return err
	}

	run := startServices(ctx, log, svcs)
	defer run.stop()
	if err := run.ready(ctx); err != nil || ctx.Err() != nil {
		return err
	}
	printBanner(cfg, stack)
	if started != nil {
		started(stack)
	}
	if err := run.wait(ctx); err != nil {
		return err
	}
	fmt.Fprintln(cfg.Out, "stopping: draining services and saving checkpoints…")
	return nil
}

// checkDevTriggers loads the trigger files before anything starts, so a
// bad file fails in a moment rather than after the servers came up.
func checkDevTriggers(cfg DevConfig) error {
	v, err := trigger.NewValidator(cfg.Tenant, trigger.Limits{}, nil)
	if err != nil {
		return err
	}
	if _, err := trigger.LoadTriggers(cfg.Triggers, v); err != nil {
		return fmt.Errorf("load triggers from %s: %w", cfg.Triggers, err)
	}
	return nil
}

// stops undoes a start-up in reverse order.
type stops []func()

func (s stops) run() {
	for i := len(s) - 1; i >= 0; i-- {
		s[i]()
	}
}

// startDevStack starts what the services need: NATS and the Temporal dev
// server unless external ones are configured, and the demo receiver. stop
// stops them again; on an error nothing is left running.
func startDevStack(ctx context.Context, cfg DevConfig, log *slog.Logger) (_ *DevStack, stop func(), err error) {
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return nil, nil, err
	}
	var undo stops
	defer func() {
		if err != nil {
			undo.run()
		}
	}()
	s := &DevStack{NATSURL: cfg.NATSURL, TemporalHostPort: cfg.TemporalHostPort}
	if s.NATSURL == "" {
		ns, err := StartNATS(filepath.Join(cfg.DataDir, "nats"), cfg.NATSPort)
		if err != nil {
			return nil, nil, fmt.Errorf("%w (is port taken? point at an external one with --nats)", err)
		}
		undo = append(undo, func() { ns.Shutdown(); ns.WaitForShutdown() })
		s.NATSURL = ns.ClientURL()
	}
	if s.TemporalHostPort == "" {
		dev, err := TemporalDevServer{
			CLI: cfg.TemporalCLI, Dir: cfg.DataDir, Port: cfg.TemporalPort, UIPort: cfg.TemporalUIPort,
			CLIHint: "run `make tools`, which installs the pinned CLI into ~/.cache/triggerflow/tools, or point at a server with --temporal",
		}.Start(ctx)
		if err != nil {
			return nil, nil, err
		}
		undo = append(undo, func() { stopTemporal(dev, log) })
		s.TemporalHostPort = dev.FrontendHostPort()
	}
	closeReceiver, err := s.startReceiver(ctx, cfg)
	if err != nil {
		return nil, nil, err
	}
	return s, append(undo, closeReceiver).run, nil
}

// startReceiver starts the demo receiver with the tenant's signing secret,
// created on the first run, and the worker's token keys.
func (s *DevStack) startReceiver(ctx context.Context, cfg DevConfig) (stop func(), err error) {
	dir := devSecretsDir(cfg)
	if _, err := secrets.Ensure(dir, cfg.Tenant, "default"); err != nil {
		return nil, fmt.Errorf("dev secret: %w", err)
	}
	sm, err := secrets.New(ctx, secrets.Config{Dir: dir}, nil)
	if err != nil {
		return nil, err
	}
	s.Receiver = receiver.New(receiver.Config{Secrets: sm, JWKSURL: "http://" + cfg.WorkerAddr + authn.JWKSPath, Out: cfg.Out})
	l, err := net.Listen("tcp", cfg.ReceiverAddr)
	if err != nil {
		return nil, fmt.Errorf("demo receiver on %s: %w", cfg.ReceiverAddr, err)
	}
	s.ReceiverURL = "http://" + l.Addr().String()
	srv := &http.Server{Handler: s.Receiver, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(l) }()
	return func() { _ = srv.Close() }, nil
}

func devSecretsDir(cfg DevConfig) string { return filepath.Join(cfg.DataDir, "secrets") }

// devServices returns the watcher, ingest and worker configured for the
// stack, each file built and checked the way its binary's would be.
func devServices(cfg DevConfig, s *DevStack) ([]Service, error) {
	wf, inf, wkf := devWatcherFile(cfg, s), devIngestFile(cfg, s), devWorkerFile(cfg, s)
	return Services(&wf, &inf, &wkf)
}

// Services validates the three files and returns the watcher, ingest and
// worker that run them, in that order.
func Services(wf *config.WatcherFile, inf *config.IngestFile, wkf *config.WorkerFile) ([]Service, error) {
	for _, err := range []error{wf.Validate(), inf.Validate(), wkf.Validate()} {
		if err != nil {
			return nil, err
		}
	}
	return []Service{
		{"watcher", func(ctx context.Context, o Options) error { return Watcher(ctx, wf, o) }},
		{"ingest", func(ctx context.Context, o Options) error { return Ingest(ctx, inf, o) }},
		{"worker", func(ctx context.Context, o Options) error { return Worker(ctx, wkf, o) }},
	}, nil
}

func devWatcherFile(cfg DevConfig, s *DevStack) config.WatcherFile {
	w := config.Watcher{
		Tenant: cfg.Tenant, SQLite: config.SQLiteSource{Path: filepath.Join(cfg.DataDir, "documents.db")}, Triggers: cfg.Triggers,
		// A fresh data dir has no checkpoint: start at the head (audited).
		// Later runs resume from the checkpoint and lose nothing.
		StartFromNow: true, CheckpointInterval: trigger.Duration(200 * time.Millisecond),
	}
	if cfg.PostgresDSN != "" {
		w.Source = config.SourcePostgres
		w.Postgres.DSN = cfg.PostgresDSN
	}
	return config.WatcherFile{Log: cfg.Log, HTTP: config.HTTP{Addr: cfg.WatcherAddr}, NATS: config.NATS{URL: s.NATSURL}, Watcher: w}.WithDefaults()
}

func devIngestFile(cfg DevConfig, s *DevStack) config.IngestFile {
	return config.IngestFile{Log: cfg.Log, HTTP: config.HTTP{Addr: cfg.IngestAddr},
		NATS: config.NATS{URL: s.NATSURL}, Temporal: config.Temporal{HostPort: s.TemporalHostPort},
		Ingest: config.Ingest{Sharing: "shared"}}.WithDefaults()
}

func devWorkerFile(cfg DevConfig, s *DevStack) config.WorkerFile {
	return config.WorkerFile{Log: cfg.Log, HTTP: config.HTTP{Addr: cfg.WorkerAddr},
		NATS: config.NATS{URL: s.NATSURL}, Temporal: config.Temporal{HostPort: s.TemporalHostPort},
		Worker: config.Worker{
			AllowLoopback: new(true), QuietPeriod: trigger.Duration(30 * time.Second),
			Secrets: config.Secrets{Dir: devSecretsDir(cfg)}, Tokens: config.Tokens{KeyFile: filepath.Join(cfg.DataDir, "keys", "token-signing.pem")},
		}}.WithDefaults()
}

// Service is one of the daemons, run from its file until ctx ends.
type Service struct {
	Name string
	Run  func(ctx context.Context, opts Options) error
}

// serviceGroup is the dev stack's services running side by side.
type serviceGroup struct {
	n      int
	cancel context.CancelFunc
	wg     sync.WaitGroup
	up     chan struct{}
	errc   chan error
}

// startServices starts svcs under a context of their own, so that stop
// ends them all when one fails as well as when ctx ends.
func startServices(ctx context.Context, log *slog.Logger, svcs []Service) *serviceGroup {
	runCtx, cancel := context.WithCancel(ctx)
	g := &serviceGroup{n: len(svcs), cancel: cancel, up: make(chan struct{}, len(svcs)), errc: make(chan error, len(svcs))}
	for _, s := range svcs {
		opts := Options{Logger: log.With("svc", s.Name), OnReady: func(string) { g.up <- struct{}{} }}
		g.wg.Go(func() {
			if err := s.Run(runCtx, opts); err != nil {
				g.errc <- fmt.Errorf("%s: %w", s.Name, err)
			}
		})
	}
	return g
}

// ready waits until every service is ready or one fails; it returns nil
// early when ctx ends.
func (g *serviceGroup) ready(ctx context.Context) error {
	for range g.n {
		select {
		case <-g.up:
		case err := <-g.errc:
			return err
		case <-ctx.Done():
			return nil
		}
	}
	return nil
}

// wait waits until a service fails, or for nil when ctx ends.
func (g *serviceGroup) wait(ctx context.Context) error {
	select {
	case err := <-g.errc:
		return err
	case <-ctx.Done():
		return nil
	}
}

// stop stops every service and waits until all have.
func (g *serviceGroup) stop() {
	g.cancel()
	g.wg.Wait()
}

// stopTemporal stops the dev server, and the readiness-check client that
// DevServer.Stop leaves open.
func stopTemporal(dev *testsuite.DevServer, log *slog.Logger) {
	dev.Client().Close()
	if err := dev.Stop(); err != nil {
		log.Warn("temporal dev server stop", "error", err)
	}
}

func printBanner(cfg DevConfig, s *DevStack) {
	ui := "(external Temporal)"
	if cfg.TemporalHostPort == "" && cfg.TemporalUIPort > 0 {
		ui = fmt.Sprintf("http://localhost:%d", cfg.TemporalUIPort)
	}
	fmt.Fprintf(cfg.Out, `
Triggerflow dev stack is up (tenant %q, triggers from %s, data in %s)

  Temporal UI      %s
  Temporal         %s
  NATS             %s
  Demo receiver    %s   (verifies signatures and tokens, prints deliveries below)
  Metrics          http://%s/metrics  http://%s/metrics  http://%s/metrics
  Token keys       http://%s%s

Write a document:
  go run ./cmd/triggerflow doc put --tenant %s orders o-1 '{"status":"paid","total":42}'
  (or sqlite3 %s: INSERT INTO documents ...)

Ctrl-C stops everything; the next run resumes from the saved checkpoint.

`, cfg.Tenant, cfg.Triggers, cfg.DataDir, ui, s.TemporalHostPort, s.NATSURL, s.ReceiverURL,
		cfg.WatcherAddr, cfg.IngestAddr, cfg.WorkerAddr, cfg.WorkerAddr, authn.JWKSPath,
		cfg.Tenant, filepath.Join(cfg.DataDir, "documents.db"))
}
