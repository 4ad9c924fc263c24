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
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/triggerflow/triggerflow/config"
	"github.com/triggerflow/triggerflow/daemon"
)

const about = `worker runs Triggerflow's delivery workflows — one per document and
trigger, delivering its changes in order — and their webhook activities,
which POST each task signed (Standard Webhooks) with a per-tenant token under
the trigger's retry policy, and dead-letter what fails for good. Add replicas
freely: they poll the same Temporal task queue (temporal.taskQueue).

SIGTERM or SIGINT stops it; Temporal hands what it was running to another
replica. The ops port (http.addr, default :9466) serves /metrics (the
Temporal SDK's included), /healthz, /readyz and the token keys at
/.well-known/jwks.json.`

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	cl := daemon.NewCommandLine("worker", about)
	if status, done := cl.Parse(args, stdout, stderr); done {
		return status
	}
	cfg, err := config.LoadWorker(cl.Config)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return daemon.ExitUsage
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := daemon.Worker(ctx, cfg, daemon.Options{}); err != nil {
		fmt.Fprintln(stderr, "worker:", err)
		return daemon.ExitFailure
	}
	return 0
}
