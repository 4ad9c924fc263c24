package cli_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/triggerflow/triggerflow/audit"
	"github.com/triggerflow/triggerflow/config"
	"github.com/triggerflow/triggerflow/docstore"
	"github.com/triggerflow/triggerflow/internal/testenv"
	"github.com/triggerflow/triggerflow/streams"
)

func TestDocPutGetDelete(t *testing.T) {
	t.Parallel()
	db := filepath.Join(t.TempDir(), "docs.db")
	code, out, errOut := run("doc", "--db", db, "--tenant", "acme", "put", "orders", "o.1", `{"status":"paid"}`)
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "put acme/orders/o.1 version 1")
	code, out, _ = run("doc", "--db", db, "--tenant", "acme", "get", "orders", "o.1")
	require.Equal(t, 0, code)
	require.JSONEq(t, `{"status":"paid"}`, out)
	code, _, errOut = run("doc", "--db", db, "--tenant", "acme", "put", "orders", "o.2", `{not json`)
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "not valid JSON")
	code, out, _ = run("doc", "--db", db, "--tenant", "acme", "delete", "orders", "o.1")
	require.Equal(t, 0, code)
	require.Contains(t, out, "deleted")
	code, _, errOut = run("doc", "--db", db, "--tenant", "acme", "delete", "orders", "o.1")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "not found")
}

// opsEnv is a watcher config over a real SQLite store and embedded NATS
// with the streams provisioned, as after a watcher's first start.
func opsEnv(t *testing.T) (cfgPath string, store *docstore.Store, js jetstream.JetStream) {
	t.Helper()
	ns := testenv.NATS(t)
	js, err := jetstream.New(ns.Conn(t))
	require.NoError(t, err)
	require.NoError(t, streams.Ensure(context.Background(), js, config.NATS{}.WithDefaults().Streams()))
	dir := t.TempDir()
	db := filepath.Join(dir, "docs.db")
	cfgPath = filepath.Join(dir, "watcher.yaml")
	require.NoError(t, os.WriteFile(cfgPath, fmt.Appendf(nil, "nats: {url: %q}\nwatcher: {tenant: acme, sqlite: {path: %q}}\n", ns.URL(), db), 0o600))
	store, err = docstore.Open(context.Background(), docstore.Config{Path: db})
	require.NoError(t, err)
	t.Cleanup(func() { store.Close() })
	return cfgPath, store, js
}

// checkpointEnv is opsEnv with three documents in acme/orders; key is
// the watcher's checkpoint key for acme.
func checkpointEnv(t *testing.T) (cfgPath string, store *docstore.Store, js jetstream.JetStream, key string) {
	t.Helper()
	cfgPath, store, js = opsEnv(t)
	for i := range 3 {
		require.NoError(t, store.Put(context.Background(), "acme", "orders", fmt.Sprint(i), []byte(`{}`)))
	}
	return cfgPath, store, js, "sys/checkpoints/trigger_evaluator/acme"
}

func TestCheckpointCommandsAreAudited(t *testing.T) {
	t.Parallel()
	cfg, store, js, key := checkpointEnv(t)
	ctx := context.Background()

	code, out, errOut := run("checkpoint", "show", "--config", cfg)
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "(none: the watcher will not start")
	require.Contains(t, out, docstore.FormatPosition(3), "source head")

	code, _, errOut = run("checkpoint", "set", "--config", cfg, "--position", docstore.FormatPosition(1))
	require.Equal(t, 1, code, "actor and reason are required")
	require.Contains(t, errOut, `required flag(s) "actor", "reason" not set`)

	code, _, errOut = run("checkpoint", "set", "--config", cfg, "--position", docstore.FormatPosition(1), "--actor", "ada", "--reason", "skip bad batch")
	require.Equal(t, 0, code, errOut)
	pos, _, err := store.Checkpoints().Load(ctx, key)
	require.NoError(t, err)
	require.Equal(t, docstore.FormatPosition(1), pos)

	code, _, errOut = run("replay", "--config", cfg, "--from", docstore.FormatPosition(0), "--actor", "ada", "--reason", "receiver lost data")
	require.Equal(t, 0, code, errOut)

	code, _, errOut = run("checkpoint", "reset", "--config", cfg, "--start-from-now", "--actor", "bob", "--reason", "new tenant")
	require.Equal(t, 0, code, errOut)
	pos, _, err = store.Checkpoints().Load(ctx, key)
	require.NoError(t, err)
	require.Equal(t, docstore.FormatPosition(3), pos)

	code, _, errOut = run("checkpoint", "reset", "--config", cfg, "--actor", "bob", "--reason", "force explicit start")
	require.Equal(t, 0, code, errOut)
	_, found, err := store.Checkpoints().Load(ctx, key)
	require.NoError(t, err)
	require.False(t, found)

	recs, err := audit.List(ctx, js, "TRIGGERS_AUDIT", "acme", 0)
	require.NoError(t, err)
	require.Len(t, recs, 4)
	want := []struct {
		action        audit.Action
		actor, before string
		after         string
	}{
		{audit.ActionCheckpointSet, "ada", "", docstore.FormatPosition(1)},
		{audit.ActionResumeToken, "ada", docstore.FormatPosition(1), docstore.FormatPosition(0)},
		{audit.ActionCheckpointReset, "bob", docstore.FormatPosition(0), docstore.FormatPosition(3)},
		{audit.ActionCheckpointReset, "bob", docstore.FormatPosition(3), ""},
	}
	for i, w := range want {
		require.Equal(t, w.action, recs[i].Action, i)
		require.Equal(t, w.actor, recs[i].Actor, i)
		require.Equal(t, w.before, recs[i].Before, i)
		require.Equal(t, w.after, recs[i].After, i)
		require.Equal(t, key, recs[i].Key)
	}

	code, out, errOut = run("audit", "list", "--nats", natsURL(t, cfg), "--tenant", "acme")
	require.Equal(t, 0, code, errOut)
	require.Equal(t, 5, strings.Count(out, "\n"), "header and four records:\n%s", out)
	require.Contains(t, out, "receiver lost data")
}

func TestCheckpointRefusesWithoutAuditTrail(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "w.yaml")
	require.NoError(t, os.WriteFile(cfg, fmt.Appendf(nil, "nats: {url: \"nats://127.0.0.1:1\"}\nwatcher: {tenant: acme, sqlite: {path: %q}}\n", filepath.Join(dir, "d.db")), 0o600))
	code, _, errOut := run("checkpoint", "set", "--config", cfg, "--position", "1", "--actor", "a", "--reason", "r")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "audit trail must be writable")
}

func natsURL(t *testing.T, cfgPath string) string {
	t.Helper()
	cfg, err := config.LoadWatcher(cfgPath)
	require.NoError(t, err)
	return cfg.NATS.URL
}
