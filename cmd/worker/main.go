// Command worker runs Triggerflow's delivery workflows and their webhook
// activities on the configured Temporal task queue.
//
//	worker --config worker.yaml
//
// Its ops port serves /metrics (including the Temporal SDK's), /healthz,
// /readyz and the token verification keys at /.well-known/jwks.json.
package main

import (
	"os"

	"github.com/triggerflow/triggerflow/internal/daemon"
)

func main() { os.Exit(daemon.WorkerBinary.Main(os.Args[1:], os.Stdout, os.Stderr)) }
