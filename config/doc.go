// Package config loads the configuration files of the Triggerflow binaries:
// WatcherFile, IngestFile and WorkerFile.
//
// Each file is made of component structs (NATS, Temporal, Watcher, ...)
// whose field comments state their defaults. WithDefaults fills zero
// values and Validate reports every problem at once as FieldErrors, so a
// user fixes a file in one pass instead of one restart per typo.
//
// Load reads a file, applies TRIGGERFLOW_* environment overrides (see
// EnvName), fills defaults and validates:
//
//	cfg, err := config.Load[config.WatcherFile](path)
//
// docs/configuration.md lists every key; a test keeps it complete.
package config
