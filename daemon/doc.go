// Package daemon runs Triggerflow's three services — watcher, ingest and
// worker — from their configuration files. The binaries in cmd/ parse flags
// and call these functions; the all-in-one `triggerflow dev` calls all three
// in one process.
package daemon
