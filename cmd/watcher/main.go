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
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/triggerflow/triggerflow/config"
	"github.com/triggerflow/triggerflow/daemon"
)

func main() {
	path := flag.String("config", "", "path to the watcher's YAML config file (TRIGGERFLOW_* variables override it)")
	triggers := flag.String("triggers", "", "trigger file or directory (overrides watcher.triggers)")
	flag.Parse()

	cfg, err := config.LoadWatcher(*path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	if *triggers != "" {
		cfg.Watcher.Triggers = *triggers
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := daemon.Watcher(ctx, cfg, daemon.Options{Reload: daemon.ReloadOnSIGHUP(ctx)}); err != nil {
		fmt.Fprintln(os.Stderr, "watcher:", err)
		os.Exit(1)
	}
}
