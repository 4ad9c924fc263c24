package daemon_test

import (
	"os"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/triggerflow/triggerflow/codec"
	"github.com/triggerflow/triggerflow/config"
	"github.com/triggerflow/triggerflow/internal/daemon"
)

func TestDevCodec(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	c, srv, err := daemon.DevCodec(dir, 8233)
	require.NoError(t, err)
	require.True(t, c.Enabled)
	require.Equal(t, daemon.DevCodecKeyFile(dir), c.KeyFile)
	info, err := os.Stat(c.KeyFile)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), info.Mode().Perm())
	require.Equal(t, config.CodecServer{Enabled: true, AllowedOrigins: []string{"http://localhost:8233", "http://127.0.0.1:8233"}}, srv)

	// The next run keeps the key, so the histories it wrote stay readable.
	again, _, err := daemon.DevCodec(dir, -1)
	require.NoError(t, err)
	require.Equal(t, c, again)

	// What it returns passes the files' checks and loads.
	wkf := config.WorkerFile{Temporal: config.Temporal{Codec: c}, Worker: config.Worker{CodecServer: srv}}.WithDefaults()
	require.NoError(t, wkf.Validate())
	ring, err := codec.LoadKeys(c.KeyFile, nil)
	require.NoError(t, err)
	_, err = codec.New(codec.Config{Keys: ring, ActiveKey: c.ActiveKey})
	require.NoError(t, err)
}

func TestDevUICodecArgs(t *testing.T) {
	t.Parallel()
	require.Equal(t, []string{"--ui-codec-endpoint", "http://127.0.0.1:9466/codec"}, daemon.DevUICodecArgs("127.0.0.1:9466"))
	require.Equal(t, []string{"--ui-codec-endpoint", "http://localhost:9466/codec"}, daemon.DevUICodecArgs(":9466"))
	require.Equal(t, []string{"--ui-codec-endpoint", "http://localhost:9466/codec"}, daemon.DevUICodecArgs("0.0.0.0:9466"))
	require.Equal(t, []string{"--ui-codec-endpoint", "http://[::1]:9466/codec"}, daemon.DevUICodecArgs("[::1]:9466"))
	require.Nil(t, daemon.DevUICodecArgs("nonsense"))
}
