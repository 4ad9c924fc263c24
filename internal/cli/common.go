package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"slices"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/triggerflow/triggerflow/config"
	"github.com/triggerflow/triggerflow/docstore"
	"github.com/triggerflow/triggerflow/internal/daemon"
	"github.com/triggerflow/triggerflow/internal/service"
	"github.com/triggerflow/triggerflow/trigger"
	"github.com/triggerflow/triggerflow/watcher"
)

// watcherFlags are the flags of commands that act on a watcher's source,
// checkpoints or streams: the watcher's own config file, and overrides.
type watcherFlags struct {
	config string
	tenant string
}

func (f *watcherFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.config, "config", "", "the watcher's config file (its source, NATS and tenant are used; TRIGGERFLOW_* variables apply)")
	cmd.Flags().StringVar(&f.tenant, "tenant", "", "tenant (default: watcher.tenant from the config)")
}

// load reads the watcher config like the watcher does and returns the
// tenant to act on. For a one-tenant config --tenant takes the place of
// watcher.tenant. A config serving several tenants (watcher.tenants) is
// used as is, so a command opens the same source and slot as the watcher,
// and --tenant picks one of its tenants.
func (f *watcherFlags) load() (*config.WatcherFile, string, error) {
	var data []byte
	name := "(no config file)"
	if f.config != "" {
		var err error
		if data, err = os.ReadFile(f.config); err != nil {
			return nil, "", err
		}
		name = f.config
	}
	if f.tenant != "" {
		cfg, err := config.Parse[config.WatcherFile](name, data, os.LookupEnv)
		if err == nil && len(cfg.Watcher.Tenants) > 0 {
			if !slices.Contains(cfg.Watcher.Tenants, f.tenant) && !slices.Contains(cfg.Watcher.Tenants, trigger.AllTenants) {
				return nil, "", fmt.Errorf("--tenant %q is not in watcher.tenants of %s (%s)", f.tenant, name, strings.Join(cfg.Watcher.Tenants, ", "))
			}
			return cfg, f.tenant, nil
		}
	}
	lookup := os.LookupEnv
	if f.tenant != "" {
		lookup = func(k string) (string, bool) {
			if k == config.EnvName("watcher.tenant") {
				return f.tenant, true
			}
			return os.LookupEnv(k)
		}
	}
	cfg, err := config.Parse[config.WatcherFile](name, data, lookup)
	if err != nil {
		return nil, "", err
	}
	if cfg.Watcher.Tenant == "" {
		return nil, "", fmt.Errorf("%s serves several tenants (watcher.tenants): name one with --tenant", name)
	}
	return cfg, cfg.Watcher.Tenant, nil
}

func (f *watcherFlags) source(ctx context.Context, cfg *config.WatcherFile) (watcher.Source, error) {
	return daemon.OpenSource(ctx, cfg, quiet(), nil)
}

// existingSource opens the source like source, but refuses to create a
// SQLite store that is not there: with a relative path and no --config, a
// command run from the wrong directory would otherwise make an empty store
// and answer from it. A checkpoint is a position in an existing store's
// change log, so every checkpoint command uses this.
func (f *watcherFlags) existingSource(ctx context.Context, cfg *config.WatcherFile, tenant string) (watcher.Source, error) {
	if cfg.Watcher.Source == config.SourcePostgres {
		return f.source(ctx, cfg)
	}
	src, err := docstore.OpenSource(ctx, docstore.Config{Path: cfg.Watcher.SQLite.Path, MustExist: true, Logger: quiet()}, tenant)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("%w (watcher.sqlite.path %q; pass the watcher's config with --config, or run from the directory that path is relative to)", err, cfg.Watcher.SQLite.Path)
	case err != nil:
		return nil, fmt.Errorf("sqlite source %s: %w", cfg.Watcher.SQLite.Path, err)
	}
	return src, nil
}

// jetStream connects to the NATS of cfg without retrying forever: an
// operator command should fail fast when NATS is away.
func jetStream(cfg config.NATS) (*nats.Conn, jetstream.JetStream, error) {
	nc, err := service.DialNATS(cfg, "triggerflow-cli")
	if err != nil {
		return nil, nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return nc, js, nil
}

func quiet() *slog.Logger {
	return service.NewLogger(config.Log{Format: config.LogText, Level: config.LevelError}, io.Discard)
}
