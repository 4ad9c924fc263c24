// Package deploytest checks the deployment files: no Docker engine runs in
// CI, so the compose file is validated with the compose-spec loader and each
// service's config file with Triggerflow's own config loader.
package deploytest

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/stretchr/testify/require"

	"github.com/triggerflow/triggerflow/codec"
	"github.com/triggerflow/triggerflow/config"
	"github.com/triggerflow/triggerflow/trigger"
)

func TestComposeFileIsValid(t *testing.T) {
	t.Parallel()
	opts, err := cli.NewProjectOptions([]string{"../../docker-compose.yml"},
		cli.WithWorkingDirectory("../.."), cli.WithName("triggerflow"), cli.WithResolvedPaths(true))
	require.NoError(t, err)
	p, err := opts.LoadProject(context.Background())
	require.NoError(t, err)

	for _, name := range []string{"temporal", "temporal-ui", "temporal-db", "nats", "source-db", "prometheus", "grafana", "watcher", "ingest", "worker", "codec-server"} {
		_, err := p.GetService(name)
		require.NoError(t, err, "service %s", name)
	}
	for name, replicas := range map[string]int{"ingest": 2, "worker": 2} {
		s, err := p.GetService(name)
		require.NoError(t, err)
		require.NotNil(t, s.Deploy)
		require.Equal(t, replicas, *s.Deploy.Replicas, name)
	}
	src, err := p.GetService("source-db")
	require.NoError(t, err)
	require.Contains(t, src.Command, "wal_level=logical")

	// The UI decrypts history through the codec server, at the address
	// the browser reaches it on.
	ui, err := p.GetService("temporal-ui")
	require.NoError(t, err)
	endpoint := ui.Environment["TEMPORAL_CODEC_ENDPOINT"]
	require.NotNil(t, endpoint)
	cs, err := p.GetService("codec-server")
	require.NoError(t, err)
	require.Equal(t, []string{"triggerflow", "codec-server", "--config", "/etc/triggerflow/worker.yaml", "--addr", ":8081"}, []string(cs.Command))
	require.Len(t, cs.Ports, 1)
	require.Equal(t, "http://localhost:"+cs.Ports[0].Published, *endpoint)

	// Every file a service mounts exists in the repository.
	for _, s := range p.Services {
		for _, v := range s.Volumes {
			if v.Type == "bind" {
				_, err := os.Stat(v.Source)
				require.NoError(t, err, "service %s mounts %s", s.Name, v.Source)
			}
		}
	}
}

func TestServiceConfigsLoad(t *testing.T) {
	t.Parallel()
	w, err := config.LoadWatcher("../config/watcher.yaml")
	require.NoError(t, err)
	require.Equal(t, config.Source("postgres"), w.Watcher.Source)
	in, err := config.LoadIngest("../config/ingest.yaml")
	require.NoError(t, err)
	wk, err := config.LoadWorker("../config/worker.yaml")
	require.NoError(t, err)

	// History is encrypted, with the same key ring in ingest and the
	// worker, and the dev key file (mounted at the configured path) holds
	// the active key.
	require.True(t, in.Temporal.Codec.Enabled)
	require.Equal(t, in.Temporal.Codec, wk.Temporal.Codec)
	ring, err := codec.LoadKeys(filepath.Join("..", "codec", filepath.Base(wk.Temporal.Codec.KeyFile)), nil)
	require.NoError(t, err)
	_, err = codec.New(codec.Config{Keys: ring, ActiveKey: wk.Temporal.Codec.ActiveKey})
	require.NoError(t, err)
	require.Equal(t, "/etc/triggerflow/codec/", filepath.Dir(wk.Temporal.Codec.KeyFile)+"/")
	require.Contains(t, wk.Worker.CodecServer.AllowedOrigins, "http://localhost:8080", "the UI's origin")

	v, err := trigger.NewValidator(w.Watcher.Tenant, w.Validation, nil)
	require.NoError(t, err)
	_, err = trigger.LoadTriggers(filepath.Join("..", "triggers"), v)
	require.NoError(t, err, "the stack's triggers load for its tenant")
}
