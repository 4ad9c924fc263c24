package service

import (
	"cmp"
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
)

// version and revision are set at link time where the build has no VCS
// stamp to read (a container build from a source tree without .git):
//
//	go build -ldflags "-X github.com/triggerflow/triggerflow/internal/service.version=v1.2.0 -X github.com/triggerflow/triggerflow/internal/service.revision=$(git rev-parse HEAD)"
//
// An empty value falls back to what debug.ReadBuildInfo reports.
var version, revision string

// BuildInfo identifies the build of the running binary.
type BuildInfo struct {
	// Version is the main module's version: the -X override, else the
	// version the go command stamped (a tag, or a pseudo-version ending in
	// +dirty for a modified tree), else "(devel)".
	Version string
	// Revision is the VCS commit: the -X override, else vcs.revision,
	// else "unknown".
	Revision string
	// GoVersion is the Go release the binary was built with.
	GoVersion string
}

// Build returns the running binary's build information.
func Build() BuildInfo {
	bi, ok := debug.ReadBuildInfo()
	return buildInfo(version, revision, bi, ok)
}

// buildInfo prefers the link-time values to the go command's stamp.
func buildInfo(version, revision string, bi *debug.BuildInfo, ok bool) BuildInfo {
	b := BuildInfo{Version: version, Revision: revision, GoVersion: runtime.Version()}
	if ok {
		b.Version = cmp.Or(b.Version, bi.Main.Version)
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && b.Revision == "" {
				b.Revision = s.Value
			}
		}
	}
	if b.Version == "" {
		b.Version = "(devel)"
	}
	b.Revision = cmp.Or(b.Revision, "unknown")
	return b
}

// String is the --version line of a binary named name.
func (b BuildInfo) String(name string) string {
	return fmt.Sprintf("%s %s (revision %s, %s)", name, b.Version, b.Revision, b.GoVersion)
}

// BuildInfoCollector returns the triggerflow_build_info gauge, 1 and
// labelled with the build, so that queries can tell replicas of different
// builds apart during a rolling upgrade. Every OpsServer serves one.
func BuildInfoCollector() prometheus.Collector {
	b := Build()
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "triggerflow_build_info",
		Help:        "Always 1; the labels name the running build.",
		ConstLabels: prometheus.Labels{"version": b.Version, "revision": b.Revision, "goversion": b.GoVersion},
	})
	g.Set(1)
	return g
}
