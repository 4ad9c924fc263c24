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
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/triggerflow/triggerflow/config"
	"github.com/triggerflow/triggerflow/daemon"
)

func main() {
	path := flag.String("config", "", "path to the ingest YAML config file (TRIGGERFLOW_* variables override it)")
	flag.Parse()
	cfg, err := config.LoadIngest(*path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := daemon.Ingest(ctx, cfg, daemon.Options{}); err != nil {
		fmt.Fprintln(os.Stderr, "ingest:", err)
		os.Exit(1)
	}
}
