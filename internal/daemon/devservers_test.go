package daemon_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/triggerflow/triggerflow/internal/daemon"
)

func TestTemporalDevServerNeedsTheCLI(t *testing.T) {
	t.Parallel()
	_, err := daemon.TemporalDevServer{CLIHint: "run `make tools`"}.Start(context.Background())
	require.EqualError(t, err, "no Temporal CLI: run `make tools`")

	missing := filepath.Join(t.TempDir(), "temporal")
	_, err = daemon.TemporalDevServer{CLI: missing, CLIHint: "run `make tools`"}.Start(context.Background())
	require.ErrorContains(t, err, "temporal CLI "+missing+": ")
	require.ErrorContains(t, err, "(run `make tools`)")
}
