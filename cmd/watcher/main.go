// Command watcher reads a document change stream from its tenant's
// checkpoint, matches changes against the trigger files and publishes
// delivery tasks to NATS JetStream.
//
//	watcher --config watcher.yaml
//
// SIGHUP reloads the trigger files (a bad reload keeps the previous set);
// SIGTERM or SIGINT drains and saves the checkpoint.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/triggerflow/triggerflow/config"
	"github.com/triggerflow/triggerflow/daemon"
)

const about = `watcher reads one tenant's document change stream (the embedded SQLite
store, or PostgreSQL logical replication) from its checkpoint, matches every
change against the trigger files with CEL, and publishes a delivery task per
match to the NATS JetStream task stream. The checkpoint only advances over
changes whose tasks JetStream acknowledged. Run exactly one per tenant.

SIGHUP reloads the trigger files (a bad set is refused and the previous one
stays active); SIGTERM or SIGINT drains and saves the checkpoint. The ops
port (http.addr, default :9464) serves /metrics, /healthz and /readyz.`

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	cl := daemon.NewCommandLine("watcher", about)
	triggers := cl.Flags().String("triggers", "", "trigger file or directory (overrides watcher.triggers)")
	if status, done := cl.Parse(args, stdout, stderr); done {
		return status
	}
	cfg, err := config.LoadWatcher(cl.Config)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return daemon.ExitUsage
	}
	if *triggers != "" {
		cfg.Watcher.Triggers = *triggers
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := daemon.Watcher(ctx, cfg, daemon.Options{Reload: daemon.ReloadOnSIGHUP(ctx)}); err != nil {
		fmt.Fprintln(stderr, "watcher:", err)
		return daemon.ExitFailure
	}
	return 0
}
