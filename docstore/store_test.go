package docstore_test

import (
	"context"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/triggerflow/triggerflow/docstore"
)

func TestPutGetDelete(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	st := openStore(t, docstore.Config{})

	start := time.Now().Add(-time.Second)
	require.NoError(t, st.Put(ctx, "acme", "orders/eu", "o-1", json.RawMessage(` { "total" : 12 } `)))
	d, err := st.Get(ctx, "acme", "orders/eu", "o-1")
	require.NoError(t, err)
	require.JSONEq(t, `{"total":12}`, string(d.Data))
	require.Equal(t, `{"total":12}`, string(d.Data), "stored compacted")
	require.EqualValues(t, 1, d.Version)
	require.WithinRange(t, d.UpdatedAt, start, time.Now().Add(time.Second))

	require.NoError(t, st.Put(ctx, "acme", "orders/eu", "o-1", json.RawMessage(`{"total":13}`)))
	d, err = st.Get(ctx, "acme", "orders/eu", "o-1")
	require.NoError(t, err)
	require.EqualValues(t, 2, d.Version)
	require.JSONEq(t, `{"total":13}`, string(d.Data))

	// Same id, other tenant or collection: other documents.
	_, err = st.Get(ctx, "other", "orders/eu", "o-1")
	require.ErrorIs(t, err, docstore.ErrNotFound)
	_, err = st.Get(ctx, "acme", "orders", "o-1")
	require.ErrorIs(t, err, docstore.ErrNotFound)

	require.NoError(t, st.Delete(ctx, "acme", "orders/eu", "o-1"))
	_, err = st.Get(ctx, "acme", "orders/eu", "o-1")
	require.ErrorIs(t, err, docstore.ErrNotFound)
	require.ErrorIs(t, st.Delete(ctx, "acme", "orders/eu", "o-1"), docstore.ErrNotFound)
}

func TestValidation(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	st := openStore(t, docstore.Config{})
	ok := json.RawMessage(`{}`)
	cases := []struct {
		name                   string
		tenant, collection, id string
		doc                    json.RawMessage
		want                   error
		mention                string
	}{
		{"empty tenant", "", "c", "i", ok, docstore.ErrInvalidTenant, "is required"},
		{"tenant dot", "ac.me", "c", "i", ok, docstore.ErrInvalidTenant, `'.'`},
		{"tenant slash", "a/b", "c", "i", ok, docstore.ErrInvalidTenant, `'/'`},
		{"long tenant", strings.Repeat("t", 129), "c", "i", ok, docstore.ErrInvalidTenant, "limit is 128"},
		{"empty collection", "t", "", "i", ok, docstore.ErrInvalidCollection, "is required"},
		{"glob collection", "t", "orders/*", "i", ok, docstore.ErrInvalidCollection, `'*'`},
		{"leading slash", "t", "/orders", "i", ok, docstore.ErrInvalidCollection, "empty segment"},
		{"double slash", "t", "a//b", "i", ok, docstore.ErrInvalidCollection, "empty segment"},
		{"space in collection", "t", "my orders", "i", ok, docstore.ErrInvalidCollection, `' '`},
		{"empty id", "t", "c", "", ok, docstore.ErrInvalidDocID, "is required"},
		{"NUL id", "t", "c", "a\x00b", ok, docstore.ErrInvalidDocID, "NUL"},
		{"bad UTF-8 id", "t", "c", "\xff", ok, docstore.ErrInvalidDocID, "UTF-8"},
		{"long id", "t", "c", strings.Repeat("i", 4097), ok, docstore.ErrInvalidDocID, "limit is 4096"},
		{"nil doc", "t", "c", "i", nil, docstore.ErrInvalidDocument, "missing"},
		{"not JSON", "t", "c", "i", json.RawMessage(`{"a":`), docstore.ErrInvalidDocument, "not valid JSON"},
		{"array", "t", "c", "i", json.RawMessage(`[1]`), docstore.ErrInvalidDocument, "not an object"},
		{"null", "t", "c", "i", json.RawMessage(`null`), docstore.ErrInvalidDocument, "not an object"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := st.Put(ctx, tc.tenant, tc.collection, tc.id, tc.doc)
			require.ErrorIs(t, err, tc.want)
			require.Contains(t, err.Error(), tc.mention)
		})
	}
	// Ids may hold anything else.
	require.NoError(t, st.Put(ctx, "t", "a/b-c/d_e", "odd id/with spaces ü:*", ok))
	_, err := st.Source("no tenant!")
	require.ErrorIs(t, err, docstore.ErrInvalidTenant)
}

func TestConfigValidation(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	for _, cfg := range []docstore.Config{
		{},
		{Path: tempPath(t), Retention: -time.Second},
		{Path: tempPath(t), PollInterval: -time.Millisecond},
		{Path: tempPath(t), BatchSize: -1},
	} {
		_, err := docstore.Open(ctx, cfg)
		require.ErrorIs(t, err, docstore.ErrInvalidConfig, "%+v", cfg)
	}
	d := docstore.Config{}.WithDefaults()
	require.Equal(t, 10*time.Millisecond, d.PollInterval)
	require.Equal(t, 500, d.BatchSize)
	require.Zero(t, d.Retention)
	require.NotNil(t, d.Logger)
}

func TestReopenKeepsData(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	path := tempPath(t) // a directory that does not exist yet
	path = strings.Replace(path, "documents.db", "nested dir?#/documents.db", 1)

	st, err := docstore.Open(ctx, docstore.Config{Path: path})
	require.NoError(t, err)
	require.NoError(t, st.Put(ctx, "acme", "orders", "o-1", json.RawMessage(`{"v":1}`)))
	require.NoError(t, st.Checkpoints().Save(ctx, "sys/checkpoints/x/acme", "00000000000000000001"))
	require.NoError(t, st.Close())
	require.NoError(t, st.Close(), "Close is idempotent")
	require.ErrorIs(t, st.Put(ctx, "acme", "orders", "o-2", json.RawMessage(`{}`)), docstore.ErrClosed)

	st = openStore(t, docstore.Config{Path: path})
	d, err := st.Get(ctx, "acme", "orders", "o-1")
	require.NoError(t, err)
	require.JSONEq(t, `{"v":1}`, string(d.Data))
	pos, found, err := st.Checkpoints().Load(ctx, "sys/checkpoints/x/acme")
	require.NoError(t, err)
	require.True(t, found)
	require.Equal(t, "00000000000000000001", pos)
	got := collect(t, source(t, st, "acme"), "", 1)
	require.Equal(t, "o-1", got[0].DocKey)

	var version int
	require.NoError(t, rawDB(t, path).QueryRow(`PRAGMA user_version`).Scan(&version))
	require.Equal(t, 1, version)
	var mode string
	require.NoError(t, rawDB(t, path).QueryRow(`PRAGMA journal_mode`).Scan(&mode))
	require.Equal(t, "wal", mode)
}

// Read-only tools open with MustExist: a wrong path is an error, not a new,
// empty store that answers "nothing here".
func TestOpenMustExist(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	dir := filepath.Join(t.TempDir(), "data")
	path := filepath.Join(dir, "documents.db")
	_, err := docstore.Open(ctx, docstore.Config{Path: path, MustExist: true})
	require.ErrorIs(t, err, fs.ErrNotExist)
	require.ErrorContains(t, err, path)
	_, err = os.Stat(dir)
	require.ErrorIs(t, err, fs.ErrNotExist, "neither the file nor its directory is created")

	st := openStore(t, docstore.Config{Path: path})
	require.NoError(t, st.Put(ctx, "acme", "orders", "o-1", json.RawMessage(`{}`)))
	existing := openStore(t, docstore.Config{Path: path, MustExist: true})
	d, err := existing.Get(ctx, "acme", "orders", "o-1")
	require.NoError(t, err)
	require.EqualValues(t, 1, d.Version)
}

func TestNewerSchemaRefused(t *testing.T) {
	t.Parallel()
	path := tempPath(t)
	exec(t, rawDB(t, path), `PRAGMA user_version = 99`)
	_, err := docstore.Open(t.Context(), docstore.Config{Path: path})
	require.ErrorIs(t, err, docstore.ErrSchemaVersion)
	require.Contains(t, err.Error(), "version 99")
}

func TestCheckpointKeys(t *testing.T) {
	t.Parallel()
	cp := openStore(t, docstore.Config{}).Checkpoints()
	ctx := context.Background()
	require.ErrorIs(t, cp.Save(ctx, "", "1"), docstore.ErrInvalidCheckpointKey)
	_, _, err := cp.Load(ctx, "\xff")
	require.ErrorIs(t, err, docstore.ErrInvalidCheckpointKey)
	require.ErrorIs(t, cp.Delete(ctx, ""), docstore.ErrInvalidCheckpointKey)
}
