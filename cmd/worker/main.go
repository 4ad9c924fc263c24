// Command worker runs Triggerflow's delivery workflows and their webhook
// activities on the configured Temporal task queue.
//
//	worker --config worker.yaml
//
// Its ops port serves /metrics (including the Temporal SDK's), /healthz,
// /readyz and the token verification keys at /.well-known/jwks.json.
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
	path := flag.String("config", "", "path to the worker YAML config file (TRIGGERFLOW_* variables override it)")
	flag.Parse()
	cfg, err := config.LoadWorker(*path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := daemon.Worker(ctx, cfg, daemon.Options{}); err != nil {
		fmt.Fprintln(os.Stderr, "worker:", err)
		os.Exit(1)
	}
}
