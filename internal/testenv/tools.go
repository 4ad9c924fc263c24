// Package testenv starts the real servers that integration tests run
// against: embedded NATS with JetStream, a Temporal dev server, a throwaway
// PostgreSQL cluster and an HTTP webhook recorder. The test constructors
// take a testing.TB and register their own teardown with t.Cleanup;
// StartPostgres is the one for programs (the benchmark), which close what
// they start.
//
// It also holds the helpers tests share rather than copy: Eventually, for
// polling state that no event announces; Metric (with ParseMetrics for a
// scraped /metrics body), for reading a counter or gauge by name and
// labels; LogBuffer and LogWriter, log sinks for the code under test.
//
// Missing external tools (MissingTool, RequireTool) and missing machine
// capabilities (Unavailable) skip the test locally but fail it when
// CI=true, so a misconfigured CI machine can never go green by skipping
// everything.
package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/triggerflow/triggerflow/internal/toolpath"
)

// TemporalCLIVersion is the Temporal CLI release the harness is tested with.
const TemporalCLIVersion = toolpath.TemporalCLIVersion

// TemporalCLIEnv names the environment variable that overrides where the
// CLI is found.
const TemporalCLIEnv = toolpath.TemporalCLIEnv

// InCI reports whether the tests run under CI (CI=true), where a missing tool
// is a failure rather than a reason to skip.
func InCI() bool {
	ci, _ := strconv.ParseBool(os.Getenv("CI"))
	return ci
}

// RequireTool returns the path of an executable the test cannot run without.
// path is checked first; when empty, name is looked up on PATH. If neither
// yields an executable, the test is skipped, or failed under CI, with how
// telling the reader how to install it.
func RequireTool(t testing.TB, name, path, how string) string {
	t.Helper()
	if path == "" {
		if found, err := exec.LookPath(name); err == nil {
			return found
		}
		MissingTool(t, name, "not found on PATH", how)
		return ""
	}
	info, err := os.Stat(path)
	switch {
	case err != nil:
		MissingTool(t, name, err.Error(), how)
	case info.IsDir() || info.Mode().Perm()&0o111 == 0:
		MissingTool(t, name, path+" is not an executable file", how)
	}
	return path
}

// MissingTool ends the test because a required tool is unavailable: Skipf
// locally, Fatalf under CI.
func MissingTool(t testing.TB, name, reason, how string) {
	t.Helper()
	if InCI() {
		t.Fatalf("required tool %s is missing (%s); CI must provide it: %s", name, reason, how)
	}
	t.Skipf("skipping: required tool %s is missing (%s); to run this test: %s", name, reason, how)
}

// Unavailable ends the test because something it needs is missing from
// this machine (an address family, a host name that must resolve, a
// kernel feature): Skipf locally, Fatalf under CI, like MissingTool. Use
// it for every skip that depends on the machine, so that a CI machine
// lacking the capability fails instead of going green untested. what
// names the capability, why says what was found.
func Unavailable(t testing.TB, what, why string) {
	t.Helper()
	if InCI() {
		t.Fatalf("%s is unavailable on this machine (%s); CI must provide it", what, why)
	}
	t.Skipf("skipping: %s is unavailable on this machine (%s); CI=true fails instead", what, why)
}

// DefaultTemporalCLIPath is where `make tools` installs the Temporal CLI.
func DefaultTemporalCLIPath() string { return toolpath.DefaultTemporalCLI() }

// TemporalCLI returns the path of the Temporal CLI binary, honouring
// TRIGGERFLOW_TEMPORAL_CLI, and skips (or fails under CI) when it is absent.
// The harness never downloads the CLI itself: the SDK's auto-download reaches
// the internet, which CI machines cannot.
func TemporalCLI(t testing.TB) string {
	t.Helper()
	return RequireTool(t, "temporal", toolpath.TemporalCLI(),
		"run `make tools` (installs github.com/temporalio/cli/cmd/temporal@"+TemporalCLIVersion+
			" into "+filepath.Dir(DefaultTemporalCLIPath())+") or set "+TemporalCLIEnv)
}
