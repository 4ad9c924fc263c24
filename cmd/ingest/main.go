// Command ingest consumes delivery tasks from NATS JetStream and hands each
// to its document's Temporal workflow (SignalWithStart), acknowledging a
// task only once Temporal holds it.
//
//	ingest --config ingest.yaml
//
// SIGTERM or SIGINT stops fetching, lets in-flight hand-offs finish and
// hands the rest back to another replica.
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

const about = `ingest consumes Triggerflow's delivery tasks from the NATS JetStream task
stream and hands each to its document's Temporal workflow
(SignalWithStartWorkflow), acknowledging a task only once Temporal holds it.
Replicas share one durable consumer; with ingest.sharing: pinned one receives
at a time and the others stand by.

SIGTERM or SIGINT stops fetching, finishes the hand-offs in flight and hands
the rest back, in order, to another replica. The ops port (http.addr,
default :9465) serves /metrics, /healthz and /readyz.`

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	cl := daemon.NewCommandLine("ingest", about)
	if status, done := cl.Parse(args, stdout, stderr); done {
		return status
	}
	cfg, err := config.LoadIngest(cl.Config)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return daemon.ExitUsage
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := daemon.Ingest(ctx, cfg, daemon.Options{}); err != nil {
		fmt.Fprintln(stderr, "ingest:", err)
		return daemon.ExitFailure
	}
	return 0
}
