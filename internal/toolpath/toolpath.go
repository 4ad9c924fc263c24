// Package toolpath says where the pinned Temporal CLI lives, for the dev
// command and the test harness alike, so they agree with the Makefile.
package toolpath

import (
	"os"
	"path/filepath"
)

// TemporalCLIVersion is the pinned CLI release: the newest that `go install`
// can build.
const TemporalCLIVersion = "v1.5.1"

// TemporalCLIEnv overrides the CLI's path.
const TemporalCLIEnv = "TRIGGERFLOW_TEMPORAL_CLI"

// DefaultTemporalCLI is where `make tools` installs the CLI:
// $XDG_CACHE_HOME/triggerflow/tools/temporal-<version>/temporal, with
// XDG_CACHE_HOME defaulting to $HOME/.cache. os.UserCacheDir is not used
// because on macOS it points at ~/Library/Caches, which the Makefile doesn't
// know about.
func DefaultTemporalCLI() string {
	cache := os.Getenv("XDG_CACHE_HOME")
	if cache == "" {
		home, _ := os.UserHomeDir()
		cache = filepath.Join(home, ".cache")
	}
	return filepath.Join(cache, "triggerflow", "tools", "temporal-"+TemporalCLIVersion, "temporal")
}

// TemporalCLI returns $TRIGGERFLOW_TEMPORAL_CLI or DefaultTemporalCLI.
func TemporalCLI() string {
	if p := os.Getenv(TemporalCLIEnv); p != "" {
		return p
	}
	return DefaultTemporalCLI()
}
