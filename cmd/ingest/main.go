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
	"os"

	"github.com/triggerflow/triggerflow/internal/daemon"
)

func main() { os.Exit(daemon.IngestBinary.Main(os.Args[1:], os.Stdout, os.Stderr)) }
