package daemon_test

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/triggerflow/triggerflow/internal/daemon"
	"github.com/triggerflow/triggerflow/internal/service"
)

func parse(args ...string) (cl *daemon.CommandLine, triggers *string, status int, done bool, out, errOut string) {
	cl = daemon.NewCommandLine("watcher", "watcher reads one tenant's change stream.\n\nSIGHUP reloads the triggers.")
	triggers = cl.Flags().String("triggers", "", "trigger file or directory")
	var o, e bytes.Buffer
	status, done = cl.Parse(args, &o, &e)
	return cl, triggers, status, done, o.String(), e.String()
}

func TestCommandLine(t *testing.T) {
	t.Parallel()
	t.Run("flags", func(t *testing.T) {
		t.Parallel()
		cl, triggers, _, done, out, errOut := parse("--config", "w.yaml", "--triggers", "t/")
		require.False(t, done)
		require.Empty(t, out+errOut)
		require.Equal(t, "w.yaml", cl.Config)
		require.Equal(t, "t/", *triggers)
	})
	t.Run("stray argument", func(t *testing.T) {
		t.Parallel()
		// The mistake this catches: the file given without --config, which
		// would otherwise start the daemon on defaults.
		_, _, status, done, out, errOut := parse("watcher.yaml")
		require.True(t, done)
		require.Equal(t, daemon.ExitUsage, status)
		require.Empty(t, out)
		require.Contains(t, errOut, `unexpected argument "watcher.yaml"`)
		require.Contains(t, errOut, "--config")
		_, _, status, done, _, errOut = parse("--config", "w.yaml", "extra")
		require.True(t, done)
		require.Equal(t, daemon.ExitUsage, status)
		require.Contains(t, errOut, `unexpected argument "extra"`)
	})
	t.Run("unknown flag", func(t *testing.T) {
		t.Parallel()
		_, _, status, done, out, errOut := parse("--confg", "w.yaml")
		require.True(t, done)
		require.Equal(t, daemon.ExitUsage, status)
		require.Empty(t, out)
		require.Contains(t, errOut, "flag provided but not defined: -confg")
		require.Contains(t, errOut, "watcher --help")
	})
	t.Run("help", func(t *testing.T) {
		t.Parallel()
		for _, h := range []string{"--help", "-h"} {
			_, _, status, done, out, errOut := parse(h)
			require.True(t, done)
			require.Equal(t, 0, status)
			require.Empty(t, errOut)
			require.Contains(t, out, "Usage: watcher [flags]")
			require.Contains(t, out, "SIGHUP reloads the triggers.", "the binary describes itself")
			for _, f := range []string{"--config string", "--triggers string", "--version"} {
				require.Contains(t, out, "\n  "+f+"\n", h)
			}
		}
	})
	t.Run("version", func(t *testing.T) {
		t.Parallel()
		_, _, status, done, out, errOut := parse("--version", "--config", "w.yaml")
		require.True(t, done)
		require.Equal(t, 0, status)
		require.Empty(t, errOut)
		require.Equal(t, service.Build().String("watcher")+"\n", out)
	})
}
