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
	"os"

	"github.com/triggerflow/triggerflow/internal/daemon"
)

func main() { os.Exit(daemon.WatcherBinary.Main(os.Args[1:], os.Stdout, os.Stderr)) }
