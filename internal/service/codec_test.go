package service_test

import (
	"bytes"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/triggerflow/triggerflow/codec"
	"github.com/triggerflow/triggerflow/config"
	"github.com/triggerflow/triggerflow/internal/service"
)

func TestLoadCodec(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "codec.keys")
	require.NoError(t, os.WriteFile(file, []byte(codec.FormatKey("old", bytes.Repeat([]byte{1}, codec.KeySize))+"\n"), 0o600))
	extra := codec.FormatKey("new", bytes.Repeat([]byte{2}, codec.KeySize))

	c, err := service.LoadCodec(config.Codec{Enabled: true, KeyFile: file, Keys: []string{extra}, ActiveKey: "new"})
	require.NoError(t, err)
	require.Equal(t, []string{"new", "old"}, c.KeyIDs())
	require.Equal(t, "new", c.ActiveKey())

	_, err = service.LoadCodec(config.Codec{Enabled: true, KeyFile: filepath.Join(dir, "missing"), ActiveKey: "x"})
	require.ErrorIs(t, err, fs.ErrNotExist)
	require.ErrorContains(t, err, "temporal.codec: ")

	_, err = service.LoadCodec(config.Codec{Enabled: true, KeyFile: file, ActiveKey: "new"})
	require.ErrorIs(t, err, codec.ErrInvalidConfig)
	require.ErrorContains(t, err, `the active key "new" is not in the key ring (it holds old)`)
}

// A worker or ingest whose keys do not load refuses to start: DialTemporal
// fails before any connection.
func TestDialTemporalRefusesABadKeyRing(t *testing.T) {
	t.Parallel()
	log := service.NewLogger(config.Log{Format: config.LogText, Level: config.LevelError}, io.Discard)
	_, err := service.DialTemporal(config.Temporal{HostPort: "127.0.0.1:1", Namespace: "default",
		Codec: config.Codec{Enabled: true, Keys: []string{"k=c2hvcnQ="}, ActiveKey: "k"}}, log, config.LevelError, nil)
	require.ErrorIs(t, err, codec.ErrInvalidKeys)
	require.NotContains(t, err.Error(), "c2hvcnQ")
}
