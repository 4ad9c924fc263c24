package daemon_test

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/triggerflow/triggerflow/config"
	"github.com/triggerflow/triggerflow/internal/daemon"
)

// mainFunc is a Binary's Main, whatever its file type.
type mainFunc func(args []string, stdout, stderr *bytes.Buffer) int

func mainOf[T config.File[T]](b daemon.Binary[T]) mainFunc {
	return func(args []string, stdout, stderr *bytes.Buffer) int { return b.Main(args, stdout, stderr) }
}

// TestBinaries runs each daemon binary's entry point on the command lines
// that end before anything starts.
func TestBinaries(t *testing.T) {
	t.Parallel()
	for _, b := range []struct {
		name  string
		main  mainFunc
		about string // a phrase only this binary's --help has
	}{
		{"watcher", mainOf(daemon.WatcherBinary), "SIGHUP reloads"},
		{"ingest", mainOf(daemon.IngestBinary), "SignalWithStartWorkflow"},
		{"worker", mainOf(daemon.WorkerBinary), "jwks.json"},
	} {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			run := func(args ...string) (int, string, string) {
				var out, errOut bytes.Buffer
				status := b.main(args, &out, &errOut)
				return status, out.String(), errOut.String()
			}

			status, out, errOut := run(b.name + ".yaml")
			require.Equal(t, daemon.ExitUsage, status, "a stray argument is refused")
			require.Contains(t, errOut, `unexpected argument "`+b.name+`.yaml"`)
			require.Empty(t, out)

			status, out, errOut = run("--help")
			require.Equal(t, 0, status)
			require.Contains(t, out, "Usage: "+b.name+" [flags]")
			require.Contains(t, out, b.about, "the binary describes itself")
			require.Empty(t, errOut)

			status, out, _ = run("--version")
			require.Equal(t, 0, status)
			require.Regexp(t, `^`+b.name+` \S+ \(revision \S+, go\S+\)\n$`, out)

			missing := filepath.Join(t.TempDir(), "missing.yaml")
			status, out, errOut = run("--config", missing)
			require.Equal(t, daemon.ExitUsage, status, "a configuration error is the caller's to fix")
			require.Contains(t, errOut, missing)
			require.Empty(t, out)
		})
	}
}

func TestBinaryServiceFailure(t *testing.T) {
	t.Parallel()
	b := daemon.Binary[config.IngestFile]{Name: "svc", Run: func(context.Context, *config.IngestFile, daemon.Options) error {
		return errors.New("boom")
	}}
	var out, errOut bytes.Buffer
	require.Equal(t, daemon.ExitFailure, b.Main(nil, &out, &errOut))
	require.Equal(t, "svc: boom\n", errOut.String())
}

func TestWatcherTriggersFlagWinsOverTheFile(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--triggers", "other/"}, "other/"},
		{nil, "triggers/"},
	} {
		fs := flag.NewFlagSet("watcher", flag.ContinueOnError)
		apply := daemon.WatcherBinary.Flags(fs)
		require.NoError(t, fs.Parse(c.args))
		cfg := config.WatcherFile{Watcher: config.Watcher{Triggers: "triggers/"}}
		apply(&cfg)
		require.Equal(t, c.want, cfg.Watcher.Triggers, "%v", c.args)
	}
}
