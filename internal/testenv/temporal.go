package testenv

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
)

const (
	temporalNamespace = "default"
	// The SDK's own readiness loop gives up after 60 s; a cold start with a
	// fresh SQLite file takes a couple of seconds on a 2-core machine.
	temporalStartTimeout = 60 * time.Second
	// Graceful shutdown normally takes well under this; past it the
	// process is reported as leaked rather than hanging the test forever.
	temporalStopTimeout = 30 * time.Second
)

// temporalSearchAttributes registers the product's custom search attributes
// with the dev server. The names mirror the product's own definitions (which
// live with the workflows, not here) and must stay identical to them. The
// values are placeholders: only names and types reach the server.
func temporalSearchAttributes() temporal.SearchAttributes {
	return temporal.NewSearchAttributes(
		temporal.NewSearchAttributeKeyKeyword("TenantId").ValueSet(""),
		temporal.NewSearchAttributeKeyKeyword("TriggerId").ValueSet(""),
		temporal.NewSearchAttributeKeyKeyword("Collection").ValueSet(""),
		temporal.NewSearchAttributeKeyKeyword("DocKey").ValueSet(""),
		temporal.NewSearchAttributeKeyInt64("FailedDeliveries").ValueSet(0),
	)
}

// TemporalOption customises Temporal.
type TemporalOption func(*testsuite.DevServerOptions)

// WithTemporalUI enables the web UI, useful when debugging a test by hand.
func WithTemporalUI() TemporalOption {
	return func(o *testsuite.DevServerOptions) { o.EnableUI = true }
}

// WithTemporalLogLevel sets the dev server's log level: one of debug, info,
// warn, error or never. The output is shown only when the test fails.
func WithTemporalLogLevel(level string) TemporalOption {
	return func(o *testsuite.DevServerOptions) { o.LogLevel = level }
}

// WithTemporalArgs appends raw `temporal server start-dev` flags, such as
// --dynamic-config-value.
func WithTemporalArgs(args ...string) TemporalOption {
	return func(o *testsuite.DevServerOptions) { o.ExtraArgs = append(o.ExtraArgs, args...) }
}

// TemporalServer is a Temporal CLI dev server process persisting to a SQLite
// file, so Stop and Restart behave like a real server outage.
type TemporalServer struct {
	hostPort string // fixed by the first start

	mu   sync.Mutex
	opts testsuite.DevServerOptions
	dev  *testsuite.DevServer // nil while stopped
}

// Temporal starts a headless dev server on 127.0.0.1 at a free port with
// the product's search attributes registered, and stops it on cleanup.
// Skips (fails under CI) if the Temporal CLI is not installed.
func Temporal(t testing.TB, opts ...TemporalOption) *TemporalServer {
	t.Helper()
	cli := TemporalCLI(t)
	out := newTailBuffer(256 << 10)
	logOnFailure(t, "temporal dev server", out)

	s := &TemporalServer{opts: testsuite.DevServerOptions{
		ExistingPath: cli,
		ClientOptions: &client.Options{
			Namespace: temporalNamespace,
			Logger:    newTemporalLogger(newTBWriter(t)),
		},
		DBFilename: filepath.Join(t.TempDir(), "temporal.sqlite"),
		// WAL with synchronous=normal skips the fsync per transaction yet
		// still survives the server process stopping or dying: only an OS
		// crash could lose the latest commits, and tests don't simulate one.
		ExtraArgs: []string{
			"--sqlite-pragma", "journal_mode=wal",
			"--sqlite-pragma", "synchronous=normal",
		},
		LogLevel:         "error",
		SearchAttributes: temporalSearchAttributes(),
		Stdout:           out,
		Stderr:           out,
	}}
	for _, o := range opts {
		o(&s.opts)
	}

	start := time.Now()
	s.start(t)
	s.hostPort = s.opts.ClientOptions.HostPort
	t.Logf("testenv: temporal dev server ready at %s in %s", s.hostPort, time.Since(start).Round(time.Millisecond))
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Errorf("testenv: stopping temporal dev server: %v", err)
		}
	})
	return s
}

func (s *TemporalServer) start(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dev != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), temporalStartTimeout)
	defer cancel()
	dev, err := testsuite.StartDevServer(ctx, s.opts)
	if err != nil {
		t.Fatalf("testenv: starting temporal dev server: %v", err)
	}
	// The first start picks a free port; pinning it makes Restart come back
	// on the same address. StartDevServer binds to ClientOptions.HostPort
	// when it is set, so no port juggling is needed here. Only the
	// frontend port is pinned: the server's internal service and metrics
	// ports are picked afresh on every start, which clients never see.
	if s.opts.ClientOptions.HostPort == "" {
		co := *s.opts.ClientOptions
		co.HostPort = dev.FrontendHostPort()
		s.opts.ClientOptions = &co
	}
	s.dev = dev
}

// HostPort is the frontend gRPC address, stable across Restart.
func (s *TemporalServer) HostPort() string { return s.hostPort }

// Namespace is the namespace the dev server registers and clients use.
func (s *TemporalServer) Namespace() string { return temporalNamespace }

// DBFilename is the SQLite file the server persists to, stable across
// Restart.
func (s *TemporalServer) DBFilename() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.opts.DBFilename
}

// Client dials the server and closes the client on cleanup. Its logger
// passes only warnings and errors, to t.Log, so the SDK's routine chatter
// stays out of test output. Workers created from it inherit that logger.
func (s *TemporalServer) Client(t testing.TB) client.Client {
	t.Helper()
	c, err := client.Dial(client.Options{
		HostPort:  s.HostPort(),
		Namespace: temporalNamespace,
		Logger:    newTemporalLogger(newTBWriter(t)),
	})
	if err != nil {
		t.Fatalf("testenv: dialing temporal at %s: %v", s.HostPort(), err)
	}
	t.Cleanup(c.Close)
	return c
}

// Stop shuts the server down gracefully (SIGINT) and waits for the process
// to exit. Clients stay usable objects: their calls fail until Restart.
// Stopping a stopped server is a no-op.
func (s *TemporalServer) Stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dev == nil {
		return nil
	}
	dev := s.dev
	s.dev = nil
	// DevServer.Stop leaves the client it dialled for its readiness check
	// open; close it so its gRPC goroutines don't leak.
	dev.Client().Close()

	// DevServer.Stop waits without a deadline and the SDK keeps the process
	// handle private, so bound the wait here: a wedged server then fails
	// the test instead of hanging it until the global test timeout.
	done := make(chan error, 1)
	go func() { done <- dev.Stop() }()
	select {
	case err := <-done:
		return err
	case <-time.After(temporalStopTimeout):
		return fmt.Errorf("dev server at %s did not exit within %s of SIGINT; the process may be left running",
			s.hostPort, temporalStopTimeout)
	}
}

// Restart stops the server if it is running and starts it again on the
// same host:port and SQLite file, so workflows and their history survive.
func (s *TemporalServer) Restart(t testing.TB) {
	t.Helper()
	begin := time.Now()
	if err := s.Stop(); err != nil {
		t.Fatalf("testenv: stopping temporal dev server for restart: %v", err)
	}
	stopped := time.Now()
	s.start(t)
	t.Logf("testenv: temporal dev server restarted at %s (stop %s, start %s)", s.HostPort(),
		stopped.Sub(begin).Round(time.Millisecond), time.Since(stopped).Round(time.Millisecond))
}

// newTemporalLogger adapts slog to the SDK at warn level: the SDK logs every
// worker start, poll and shutdown at info/debug, which would drown the test
// output.
func newTemporalLogger(w *tbWriter) log.Logger {
	return log.NewStructuredLogger(slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelWarn})))
}
