package cli_test

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/triggerflow/triggerflow/audit"
	"github.com/triggerflow/triggerflow/docstore"
	"github.com/triggerflow/triggerflow/internal/testenv"
)

// Issue 14: positions typed by an operator were stored as typed, and "1"
// sorts after every padded position the watcher compares it with. They
// now go through the source's parser: stored canonical, or refused with
// the flag, the value and the expected format.
func TestCheckpointPositionsAreCanonical(t *testing.T) {
	t.Parallel()
	cfg, store, js, key := checkpointEnv(t)
	ctx := context.Background()
	load := func() string {
		t.Helper()
		pos, found, err := store.Checkpoints().Load(ctx, key)
		require.NoError(t, err)
		require.True(t, found)
		return pos
	}
	audited := []string{}

	code, out, errOut := run("checkpoint", "set", "--config", cfg, "--position", "2", "--actor", "ada", "--reason", "r")
	require.Equal(t, 0, code, errOut)
	require.Equal(t, docstore.FormatPosition(2), load())
	require.Contains(t, out, docstore.FormatPosition(2))
	audited = append(audited, docstore.FormatPosition(2))

	code, _, errOut = run("replay", "--config", cfg, "--from", "01", "--actor", "ada", "--reason", "r")
	require.Equal(t, 0, code, errOut)
	require.Equal(t, docstore.FormatPosition(1), load())
	audited = append(audited, docstore.FormatPosition(1))

	for _, tc := range []struct{ cmd, flag, value string }{
		{"checkpoint set", "--position", "1x"},
		{"checkpoint set", "--position", "-1"},
		{"checkpoint set", "--position", "000000000000000000001"},
		{"replay", "--from", "garbage"},
		{"replay", "--from", "0/16B3748"}, // a PostgreSQL position
	} {
		args := append(strings.Fields(tc.cmd), "--config", cfg, tc.flag, tc.value, "--actor", "ada", "--reason", "r")
		code, _, errOut := run(args...)
		require.Equal(t, 1, code, "%s %s %q", tc.cmd, tc.flag, tc.value)
		require.Contains(t, errOut, fmt.Sprintf("%s %q", tc.flag, tc.value), "names the flag and the value")
		require.Contains(t, errOut, "decimal digits", "names the expected format")
		require.Equal(t, docstore.FormatPosition(1), load(), "a refused position leaves the checkpoint alone")
	}

	code, _, errOut = run("checkpoint", "set", "--config", cfg, "--position", "", "--actor", "ada", "--reason", "r")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "--position is empty", "an empty position must not delete the checkpoint")
	require.Equal(t, docstore.FormatPosition(1), load())

	recs, err := audit.List(ctx, js, "TRIGGERS_AUDIT", "acme", 0)
	require.NoError(t, err)
	var after []string
	for _, r := range recs {
		after = append(after, r.After)
	}
	require.Equal(t, audited, after, "only the moves that happened are audited, with the canonical position")

	// show prints a stored position as the watcher reads it.
	require.NoError(t, store.Checkpoints().Save(ctx, key, "2"))
	code, out, errOut = run("checkpoint", "show", "--config", cfg)
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "2 (= "+docstore.FormatPosition(2)+")")
	require.NoError(t, store.Checkpoints().Save(ctx, key, "garbage"))
	code, out, errOut = run("checkpoint", "show", "--config", cfg)
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, `"garbage": not a position, the watcher treats it as missing`)
}

// Issue 14: `checkpoint show --tenant demo` without --config, run from the
// wrong directory, created ./data/documents.db and answered "(none)". Not
// parallel: it changes the working directory.
func TestCheckpointShowRefusesMissingStore(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	code, out, errOut := run("checkpoint", "show", "--tenant", "demo")
	require.Equal(t, 1, code, out)
	require.Contains(t, errOut, "no store at "+filepath.Join(dir, "data", "documents.db"))
	require.Contains(t, errOut, "--config")
	require.NotContains(t, out, "(none")
	_, err := os.Stat(filepath.Join(dir, "data"))
	require.ErrorIs(t, err, fs.ErrNotExist, "a read-only command created the store")
}

// The commands that move a checkpoint refuse a missing store too: a
// position means nothing without the change log it points into.
func TestCheckpointMoveRefusesMissingStore(t *testing.T) {
	t.Parallel()
	ns := testenv.NATS(t)
	dir := t.TempDir()
	db := filepath.Join(dir, "nowhere", "documents.db")
	cfg := filepath.Join(dir, "watcher.yaml")
	require.NoError(t, os.WriteFile(cfg, fmt.Appendf(nil, "nats: {url: %q}\nwatcher: {tenant: acme, sqlite: {path: %q}}\n", ns.URL(), db), 0o600))
	for _, args := range [][]string{
		{"checkpoint", "set", "--position", "1"},
		{"checkpoint", "reset", "--start-from-now"},
		{"replay", "--from", "1"},
	} {
		code, _, errOut := run(append(args, "--config", cfg, "--actor", "ada", "--reason", "r")...)
		require.Equal(t, 1, code, "%v", args)
		require.Contains(t, errOut, "no store at "+db, "%v", args)
	}
	_, err := os.Stat(filepath.Dir(db))
	require.ErrorIs(t, err, fs.ErrNotExist)
}
