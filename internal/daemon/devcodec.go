package daemon

import (
	"fmt"
	"net"
	"path/filepath"

	"github.com/triggerflow/triggerflow/codec"
	"github.com/triggerflow/triggerflow/config"
)

// DevCodecKeyFile is where the dev stack keeps the keys that encrypt its
// Temporal history, under its data directory.
func DevCodecKeyFile(dataDir string) string { return filepath.Join(dataDir, "keys", "codec.keys") }

// DevCodec is the encryption the dev stack runs with: temporal.codec on,
// with the key ring in DevCodecKeyFile(dataDir), made with one new key
// (0600) on the first run and its last key active afterwards; and the
// worker's codec server open to the dev server's UI on uiPort (as
// http://localhost and http://127.0.0.1, whichever the browser was given).
// Put the first in the ingest and worker files' temporal.codec, the second
// in the worker file's worker.codecServer, and DevUICodecArgs in the dev
// server's arguments.
func DevCodec(dataDir string, uiPort int) (config.Codec, config.CodecServer, error) {
	file := DevCodecKeyFile(dataDir)
	active, err := codec.EnsureKeyFile(file)
	if err != nil {
		return config.Codec{}, config.CodecServer{}, err
	}
	server := config.CodecServer{Enabled: true}
	if uiPort > 0 {
		server.AllowedOrigins = []string{fmt.Sprintf("http://localhost:%d", uiPort), fmt.Sprintf("http://127.0.0.1:%d", uiPort)}
	}
	return config.Codec{Enabled: true, KeyFile: file, ActiveKey: active}, server, nil
}

// DevUICodecArgs are the Temporal dev server's arguments that point its
// UI at the codec server of the worker whose ops server listens on
// workerAddr: the browser calls http://<workerAddr>/codec (an unspecified
// host as localhost).
func DevUICodecArgs(workerAddr string) []string {
	host, port, err := net.SplitHostPort(workerAddr)
	if err != nil {
		return nil
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "localhost"
	}
	return []string{"--ui-codec-endpoint", "http://" + net.JoinHostPort(host, port) + CodecPath}
}
