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

	for _, name := range []string{"temporal", "temporal-ui", "temporal-db", "nats", "source-db", "prometheus", "grafana", "watcher", "ingest", "worker"} {
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
	_, err = config.LoadIngest("../config/ingest.yaml")
	require.NoError(t, err)
	_, err = config.LoadWorker("../config/worker.yaml")
	require.NoError(t, err)

	v, err := trigger.NewValidator(w.Watcher.Tenant, w.Validation, nil)
	require.NoError(t, err)
	_, err = trigger.LoadTriggers(filepath.Join("..", "triggers"), v)
	require.NoError(t, err, "the stack's triggers load for its tenant")
}
