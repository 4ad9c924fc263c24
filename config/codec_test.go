package config

import (
	"bytes"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/triggerflow/triggerflow/codec"
)

func TestCodecKeys(t *testing.T) {
	t.Parallel()
	k1 := codec.FormatKey("k1", bytes.Repeat([]byte{1}, codec.KeySize))
	k2 := codec.FormatKey("k2", bytes.Repeat([]byte{2}, codec.KeySize))

	t.Run("off by default, keys not needed", func(t *testing.T) {
		t.Parallel()
		f, err := Parse[IngestFile]("", nil, nil)
		require.NoError(t, err)
		require.Equal(t, Codec{}, f.Temporal.Codec)
		require.Equal(t, CodecServer{}, func() CodecServer { w, _ := Parse[WorkerFile]("", nil, nil); return w.Worker.CodecServer }())
	})
	t.Run("from the environment", func(t *testing.T) {
		t.Parallel()
		f, err := Parse[WorkerFile]("", nil, env(map[string]string{
			"TRIGGERFLOW_TEMPORAL_CODEC_ENABLED":                 "true",
			"TRIGGERFLOW_TEMPORAL_CODEC_KEYS":                    k1 + "," + k2,
			"TRIGGERFLOW_TEMPORAL_CODEC_ACTIVE_KEY":              "k2",
			"TRIGGERFLOW_WORKER_CODEC_SERVER_ENABLED":            "true",
			"TRIGGERFLOW_WORKER_CODEC_SERVER_ALLOWED_ORIGINS":    "http://localhost:8233,https://ui.example.com",
			"TRIGGERFLOW_WORKER_CODEC_SERVER_AUTH_TOKEN":         "tok",
			"TRIGGERFLOW_TEMPORAL_CODEC_KEY_FILE":                "",
			"TRIGGERFLOW_WORKER_CODEC_SERVER_UNRELATED_VARIABLE": "ignored",
		}))
		require.NoError(t, err)
		require.Equal(t, Codec{Enabled: true, Keys: []string{k1, k2}, ActiveKey: "k2"}, f.Temporal.Codec)
		require.Equal(t, CodecServer{Enabled: true, AllowedOrigins: []string{"http://localhost:8233", "https://ui.example.com"}, AuthToken: "tok"}, f.Worker.CodecServer)

		out, err := Dump(f)
		require.NoError(t, err)
		require.NotContains(t, string(out), strings.TrimPrefix(k1, "k1="))
		require.NotContains(t, string(out), "tok\n")
		require.Equal(t, 2, strings.Count(string(out), "- "+Redacted), "each key is redacted:\n%s", out)
		require.Equal(t, []string{k1, k2}, f.Temporal.Codec.Keys, "Dump must not change its argument")
	})
	t.Run("from a file", func(t *testing.T) {
		t.Parallel()
		f, err := Parse[IngestFile]("ingest.yaml", []byte("temporal:\n  codec:\n    enabled: true\n    keyFile: /etc/triggerflow/codec.keys\n    activeKey: k9\n"), nil)
		require.NoError(t, err, "a key file is read at start, not when the file is checked")
		require.Equal(t, "k9", f.Temporal.Codec.ActiveKey)
	})
	for name, tc := range map[string]struct {
		yaml  string
		env   map[string]string
		field string
		want  string
	}{
		"no keys": {
			yaml: "temporal:\n  codec:\n    enabled: true\n    activeKey: k1\n", field: "temporal.codec.keyFile",
			want: "or temporal.codec.keys must be set",
		},
		"no active key": {
			env: map[string]string{"TRIGGERFLOW_TEMPORAL_CODEC_ENABLED": "true", "TRIGGERFLOW_TEMPORAL_CODEC_KEYS": k1}, field: "temporal.codec.activeKey",
			want: "must be set (in the file or as $TRIGGERFLOW_TEMPORAL_CODEC_ACTIVE_KEY)",
		},
		"active key not among the keys": {
			env:   map[string]string{"TRIGGERFLOW_TEMPORAL_CODEC_ENABLED": "true", "TRIGGERFLOW_TEMPORAL_CODEC_KEYS": k1, "TRIGGERFLOW_TEMPORAL_CODEC_ACTIVE_KEY": "k2"},
			field: "temporal.codec.activeKey", want: `"k2" is none of the keys`,
		},
		"a malformed key": {
			env:   map[string]string{"TRIGGERFLOW_TEMPORAL_CODEC_ENABLED": "true", "TRIGGERFLOW_TEMPORAL_CODEC_KEYS": k1 + ",k2=c2hvcnQ=", "TRIGGERFLOW_TEMPORAL_CODEC_ACTIVE_KEY": "k1"},
			field: "temporal.codec.keys[1]", want: `line 1, entry 1: key "k2" is 5 bytes long; AES-256 needs 32`,
		},
		"a bad origin": {
			yaml:  "temporal:\n  codec:\n    enabled: true\n    keys: [\"" + k1 + "\"]\n    activeKey: k1\nworker:\n  codecServer:\n    enabled: true\n    allowedOrigins: [\"http://localhost:8233/\"]\n",
			field: "worker.codecServer.allowedOrigins[0]", want: `"http://localhost:8233/" is not an origin`,
		},
		"a codec server without a codec": {
			yaml: "worker:\n  codecServer:\n    enabled: true\n", field: "worker.codecServer.enabled", want: "needs temporal.codec.enabled",
		},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := Parse[WorkerFile]("worker.yaml", []byte(tc.yaml), env(tc.env))
			fe := problemsOf(t, err)
			require.Len(t, fe, 1, "%v", err)
			require.Equal(t, tc.field, fe[0].Field)
			require.Contains(t, fe[0].Error(), tc.want)
			require.NotContains(t, err.Error(), strings.TrimPrefix(k1, "k1="), "key material is never printed")
			require.NotContains(t, err.Error(), "c2hvcnQ")
		})
	}
}
