package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/testsuite"

	"github.com/triggerflow/triggerflow/authn"
	"github.com/triggerflow/triggerflow/config"
	"github.com/triggerflow/triggerflow/receiver"
	"github.com/triggerflow/triggerflow/secrets"
	"github.com/triggerflow/triggerflow/service"
	"github.com/triggerflow/triggerflow/trigger"
	"github.com/triggerflow/triggerflow/workflows"
)

// DevConfig configures the all-in-one dev stack. Zero fields take the
// documented defaults.
type DevConfig struct {
	// DataDir keeps everything between runs: NATS's store, Temporal's
	// SQLite file, the document store, secrets and keys. Defaults to "data".
	DataDir string
	// Tenant is the watcher's tenant scope. Defaults to "demo".
	Tenant string
	// Triggers is the trigger file or directory. Defaults to
	// "examples/triggers".
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
	// "127.0.0.1:8090", where the example triggers deliver.
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
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&c.DataDir, "data")
	def(&c.Tenant, "demo")
	def(&c.Triggers, filepath.Join("examples", "triggers"))
	def(&c.ReceiverAddr, "127.0.0.1:8090")
	def(&c.WatcherAddr, "127.0.0.1:9464")
	def(&c.IngestAddr, "127.0.0.1:9465")
	def(&c.WorkerAddr, "127.0.0.1:9466")
	if c.NATSPort == 0 {
		c.NATSPort = 4222
	}
	if c.TemporalPort == 0 {
		c.TemporalPort = 7233
	}
	if c.TemporalUIPort == 0 {
		c.TemporalUIPort = 8233
	}
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
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return err
	}
	v, err := trigger.NewValidator(cfg.Tenant, trigger.Limits{}, nil)
	if err != nil {
		return err
	}
	if _, err := trigger.LoadTriggers(cfg.Triggers, v); err != nil {
		return fmt.Errorf("load triggers from %s: %w", cfg.Triggers, err)
	}
	stack := &DevStack{NATSURL: cfg.NATSURL, TemporalHostPort: cfg.TemporalHostPort}

	if stack.NATSURL == "" {
		ns, err := startNATS(filepath.Join(cfg.DataDir, "nats"), cfg.NATSPort)
		if err != nil {
			return err
		}
		defer func() { ns.Shutdown(); ns.WaitForShutdown() }()
		stack.NATSURL = ns.ClientURL()
	}
	if stack.TemporalHostPort == "" {
		dev, err := startTemporal(ctx, cfg, log)
		if err != nil {
			return err
		}
		defer func() {
			// DevServer.Stop leaves its readiness-check client open.
			dev.Client().Close()
			if err := dev.Stop(); err != nil {
				log.Warn("temporal dev server stop", "error", err)
			}
		}()
		stack.TemporalHostPort = dev.FrontendHostPort()
	}

	secretsDir := filepath.Join(cfg.DataDir, "secrets")
	if _, err := secrets.Ensure(secretsDir, cfg.Tenant, "default"); err != nil {
		return fmt.Errorf("dev secret: %w", err)
	}
	sm, err := secrets.New(ctx, secrets.Config{Dir: secretsDir}, nil)
	if err != nil {
		return err
	}
	stack.Receiver = receiver.New(receiver.Config{Secrets: sm, JWKSURL: "http://" + cfg.WorkerAddr + authn.JWKSPath, Out: cfg.Out})
	rl, err := net.Listen("tcp", cfg.ReceiverAddr)
	if err != nil {
		return fmt.Errorf("demo receiver on %s: %w", cfg.ReceiverAddr, err)
	}
	stack.ReceiverURL = "http://" + rl.Addr().String()
	rsrv := &http.Server{Handler: stack.Receiver, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = rsrv.Serve(rl) }()
	defer rsrv.Close()

	natsCfg := config.NATS{URL: stack.NATSURL}
	temporalCfg := config.Temporal{HostPort: stack.TemporalHostPort}
	wf := config.WatcherFile{Log: cfg.Log, HTTP: config.HTTP{Addr: cfg.WatcherAddr}, NATS: natsCfg, Watcher: config.Watcher{
		Tenant: cfg.Tenant, SQLite: config.SQLiteSource{Path: filepath.Join(cfg.DataDir, "documents.db")}, Triggers: cfg.Triggers,
		// A fresh data dir has no checkpoint: start at the head (audited).
		// Later runs resume from the checkpoint and lose nothing.
		StartFromNow: true, CheckpointInterval: trigger.Duration(200 * time.Millisecond),
	}}.WithDefaults()
	if cfg.PostgresDSN != "" {
		wf.Watcher.Source = config.SourcePostgres
		wf.Watcher.Postgres.DSN = cfg.PostgresDSN
	}
	inf := config.IngestFile{Log: cfg.Log, HTTP: config.HTTP{Addr: cfg.IngestAddr}, NATS: natsCfg, Temporal: temporalCfg,
		Ingest: config.Ingest{Sharing: "shared"}}.WithDefaults()
	wkf := config.WorkerFile{Log: cfg.Log, HTTP: config.HTTP{Addr: cfg.WorkerAddr}, NATS: natsCfg, Temporal: temporalCfg, Worker: config.Worker{
		AllowLoopback: new(true), QuietPeriod: trigger.Duration(30 * time.Second),
		Secrets: config.Secrets{Dir: secretsDir}, Tokens: config.Tokens{KeyFile: filepath.Join(cfg.DataDir, "keys", "token-signing.pem")},
	}}.WithDefaults()
	for _, err := range []error{wf.Validate(), inf.Validate(), wkf.Validate()} {
		if err != nil {
			return err
		}
	}

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, 3)
	ready := make(chan struct{}, 3)
	onReady := func(string) { ready <- struct{}{} }
	svc := func(name string, fn func(context.Context, Options) error) {
		wg.Go(func() {
			if err := fn(runCtx, Options{Logger: log.With("svc", name), OnReady: onReady}); err != nil {
				errc <- fmt.Errorf("%s: %w", name, err)
			}
		})
	}
	svc("watcher", func(ctx context.Context, o Options) error { return Watcher(ctx, &wf, o) })
	svc("ingest", func(ctx context.Context, o Options) error { return Ingest(ctx, &inf, o) })
	svc("worker", func(ctx context.Context, o Options) error { return Worker(ctx, &wkf, o) })
	defer wg.Wait()

	for range 3 {
		select {
		case <-ready:
		case err := <-errc:
			return err
		case <-ctx.Done():
			return nil
		}
	}
	printBanner(cfg, stack)
	if started != nil {
		started(stack)
	}
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		fmt.Fprintln(cfg.Out, "stopping: draining services and saving checkpoints…")
		return nil
	}
}

func startNATS(storeDir string, port int) (*server.Server, error) {
	ns, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: port, JetStream: true, StoreDir: storeDir, NoLog: true, NoSigs: true,
	})
	if err != nil {
		return nil, fmt.Errorf("embedded NATS: %w", err)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		return nil, errors.New("embedded NATS did not start (is port taken? point at an external one with --nats)")
	}
	return ns, nil
}

func startTemporal(ctx context.Context, cfg DevConfig, log interface{ Warn(string, ...any) }) (*testsuite.DevServer, error) {
	cli := cfg.TemporalCLI
	if cli == "" {
		return nil, errors.New("no Temporal CLI: run `make tools` (it installs the pinned CLI into ~/.cache/triggerflow/tools) or point at a server with --temporal")
	}
	if _, err := os.Stat(cli); err != nil {
		return nil, fmt.Errorf("temporal CLI %s: %w (run `make tools`)", cli, err)
	}
	logFile, err := os.OpenFile(filepath.Join(cfg.DataDir, "temporal.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	opts := testsuite.DevServerOptions{
		ExistingPath:     cli,
		ClientOptions:    &client.Options{HostPort: fmt.Sprintf("127.0.0.1:%d", cfg.TemporalPort), Logger: service.TemporalLogger(service.NewLogger(cfg.Log, io.Discard), config.LevelError)},
		DBFilename:       filepath.Join(cfg.DataDir, "temporal.db"),
		EnableUI:         cfg.TemporalUIPort > 0,
		UIPort:           uiPort(cfg.TemporalUIPort),
		LogLevel:         "error",
		SearchAttributes: workflows.SearchAttributes(),
		ExtraArgs:        []string{"--sqlite-pragma", "journal_mode=wal", "--sqlite-pragma", "synchronous=normal"},
		Stdout:           logFile,
		Stderr:           logFile,
	}
	sctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	dev, err := testsuite.StartDevServer(sctx, opts)
	if err != nil {
		return nil, fmt.Errorf("temporal dev server (log in %s): %w", logFile.Name(), err)
	}
	return dev, nil
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

func uiPort(p int) string {
	if p <= 0 {
		return ""
	}
	return strconv.Itoa(p)
}
