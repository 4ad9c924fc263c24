package secrets

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/triggerflow/triggerflow/config"
)

// New returns the Manager cfg selects (cfg as filled by
// config.Worker.WithDefaults). js is needed only for the nats-kv backend.
// The file and nats-kv backends are wrapped in a Cache with default
// settings; the env backend is already in memory.
func New(ctx context.Context, cfg config.Secrets, js jetstream.JetStream) (Manager, error) {
	switch cfg.Backend {
	case config.SecretsFile, "":
		// Fail at startup rather than on the first delivery.
		st, err := os.Stat(cfg.Dir)
		if err != nil {
			return nil, fmt.Errorf("secrets: file backend directory: %w", err)
		}
		if !st.IsDir() {
			return nil, fmt.Errorf("secrets: file backend directory %s is not a directory", cfg.Dir)
		}
		return NewCache(NewDir(cfg.Dir), CacheConfig{}), nil
	case config.SecretsEnv:
		return NewEnv(cfg.EnvPrefix, nil), nil
	case config.SecretsNATSKV:
		if js == nil {
			return nil, errors.New("secrets: the nats-kv backend needs a JetStream connection")
		}
		bucket := cfg.Bucket
		if bucket == "" {
			bucket = DefaultBucket
		}
		kv, err := OpenKV(ctx, js, bucket)
		if err != nil {
			return nil, err
		}
		return NewCache(kv, CacheConfig{}), nil
	default:
		return nil, fmt.Errorf("secrets: unknown backend %q", cfg.Backend)
	}
}
