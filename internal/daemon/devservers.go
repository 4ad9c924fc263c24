package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/testsuite"

	"github.com/triggerflow/triggerflow/config"
	"github.com/triggerflow/triggerflow/internal/service"
	"github.com/triggerflow/triggerflow/workflows"
)

// StartNATS embeds a JetStream server on 127.0.0.1:port (-1 picks a free
// port) that keeps its store under storeDir, as the dev stack runs it.
func StartNATS(storeDir string, port int) (*server.Server, error) {
	ns, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: port, JetStream: true, StoreDir: storeDir, NoLog: true, NoSigs: true,
	})
	if err != nil {
		return nil, fmt.Errorf("embedded NATS: %w", err)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		return nil, errors.New("embedded NATS did not start")
	}
	return ns, nil
}

// TemporalDevServer is the Temporal dev server as the dev stack runs it:
// SQLite in WAL mode, Triggerflow's search attributes registered. The
// bench measures on the same, so its numbers hold for `make dev`.
type TemporalDevServer struct {
	// CLI is the Temporal CLI binary that runs the server.
	CLI string
	// CLIHint says how to get the CLI, for the error when it is missing.
	CLIHint string
	// Dir keeps the database (temporal.db) and the server's log
	// (temporal.log).
	Dir  string
	Port int
	// UIPort serves the web UI; 0 or less turns it off.
	UIPort int
	// ExtraArgs are appended to the server's command line.
	ExtraArgs []string
}

// Start starts the server and waits, at most 90s, until it serves.
func (t TemporalDevServer) Start(ctx context.Context) (*testsuite.DevServer, error) {
	if t.CLI == "" {
		return nil, errors.New("no Temporal CLI: " + t.CLIHint)
	}
	if _, err := os.Stat(t.CLI); err != nil {
		return nil, fmt.Errorf("temporal CLI %s: %w (%s)", t.CLI, err, t.CLIHint)
	}
	logFile, err := os.OpenFile(filepath.Join(t.Dir, "temporal.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	sctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	dev, err := testsuite.StartDevServer(sctx, t.options(logFile))
	if err != nil {
		_ = logFile.Close()
		return nil, fmt.Errorf("temporal dev server (log in %s): %w", logFile.Name(), err)
	}
	return dev, nil
}

func (t TemporalDevServer) options(logFile *os.File) testsuite.DevServerOptions {
	// The SDK client only checks readiness; its logs would be noise.
	quiet := service.TemporalLogger(slog.New(slog.DiscardHandler), config.LevelError)
	ui := ""
	if t.UIPort > 0 {
		ui = strconv.Itoa(t.UIPort)
	}
	return testsuite.DevServerOptions{
		ExistingPath:     t.CLI,
		ClientOptions:    &client.Options{HostPort: fmt.Sprintf("127.0.0.1:%d", t.Port), Logger: quiet},
		DBFilename:       filepath.Join(t.Dir, "temporal.db"),
		EnableUI:         t.UIPort > 0,
		UIPort:           ui,
		LogLevel:         "error",
		SearchAttributes: workflows.SearchAttributes(),
		ExtraArgs: append([]string{
			"--sqlite-pragma", "journal_mode=wal", "--sqlite-pragma", "synchronous=normal",
			// One partition per task queue: on one node, more only split
			// the pollers, and a task written to a partition no poller
			// waits on is forwarded after a delay.
			"--dynamic-config-value", "matching.numTaskqueueReadPartitions=1",
			"--dynamic-config-value", "matching.numTaskqueueWritePartitions=1",
		}, t.ExtraArgs...),
		Stdout: logFile,
		Stderr: logFile,
	}
}
