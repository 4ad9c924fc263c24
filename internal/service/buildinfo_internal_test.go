package service

import (
	"runtime/debug"
	"testing"

	"github.com/stretchr/testify/require"
)

// The link-time values win over the VCS stamp, and an unstamped build
// still names itself.
func TestBuildInfoSources(t *testing.T) {
	t.Parallel()
	stamped := &debug.BuildInfo{Main: debug.Module{Version: "v0.0.0-20261127120000-0123456789ab+dirty"},
		Settings: []debug.BuildSetting{{Key: "vcs", Value: "git"}, {Key: "vcs.revision", Value: "0123456789abcdef"}}}

	b := buildInfo("", "", stamped, true)
	require.Equal(t, "v0.0.0-20261127120000-0123456789ab+dirty", b.Version)
	require.Equal(t, "0123456789abcdef", b.Revision)

	b = buildInfo("", "", nil, false)
	require.Equal(t, "(devel)", b.Version)
	require.Equal(t, "unknown", b.Revision)

	b = buildInfo("v1.2.0", "feedface", stamped, true)
	require.Equal(t, "v1.2.0", b.Version)
	require.Equal(t, "feedface", b.Revision)
}
