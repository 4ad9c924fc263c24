// Package daemon runs Triggerflow's three services — watcher, ingest and
// worker — from their configuration files. Each binary in cmd/ is one call
// to its Binary's Main (WatcherBinary, IngestBinary, WorkerBinary), which
// parses the command line, loads the file and runs the service; the
// all-in-one `triggerflow dev` (Dev) runs all three in one process.
package daemon
