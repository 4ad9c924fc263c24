package secrets

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/nats-io/nats.go/jetstream"
)

// Backend is where webhook signing secrets are read.
type Backend string

// Backends.
const (
	// BackendFile reads secrets from files under Config.Dir.
	BackendFile Backend = "file"
	// BackendEnv reads secrets from environment variables whose names
	// start with Config.EnvPrefix.
	BackendEnv Backend = "env"
	// BackendNATSKV reads secrets from the JetStream key-value bucket
	// Config.Bucket.
	BackendNATSKV Backend = "nats-kv"
)

// Config selects and configures a backend.
type Config struct {
	// Backend defaults to BackendFile.
	Backend Backend
	// Dir is the file backend's root. Defaults to "secrets/".
	Dir string
	// EnvPrefix starts the env backend's variable names. Defaults to
	// "TRIGGERFLOW_SECRET_".
	EnvPrefix string
	// Bucket is the nats-kv backend's bucket. Defaults to DefaultBucket.
	Bucket string
}

// WithDefaults returns c with zero fields set to their defaults.
func (c Config) WithDefaults() Config {
	c.Backend = cmp.Or(c.Backend, BackendFile)
	c.Dir = cmp.Or(c.Dir, "secrets/")
	c.EnvPrefix = cmp.Or(c.EnvPrefix, "TRIGGERFLOW_SECRET_")
	c.Bucket = cmp.Or(c.Bucket, DefaultBucket)
	return c
}

// New returns the Manager cfg selects (zero fields take their defaults).
// js is needed only for the nats-kv backend. The file and nats-kv backends
// are wrapped in a Cache with default settings; the env backend is already
// in memory.
func New(ctx context.Context, cfg Config, js jetstream.JetStream) (Manager, error) {
	cfg = cfg.WithDefaults()
	switch cfg.Backend {
	case BackendFile:
		// Fail at startup rather than on the first delivery.
		st, err := os.Stat(cfg.Dir)
		if err != nil {
			return nil, fmt.Errorf("secrets: file backend directory: %w", err)
		}
		if !st.IsDir() {
			return nil, fmt.Errorf("secrets: file backend directory %s is not a directory", cfg.Dir)
		}
		return NewCache(NewDir(cfg.Dir), CacheConfig{}), nil
	case BackendEnv:
		return NewEnv(cfg.EnvPrefix, nil), nil
	case BackendNATSKV:
		if js == nil {
			return nil, errors.New("secrets: the nats-kv backend needs a JetStream connection")
		}
		kv, err := OpenKV(ctx, js, cfg.Bucket)
		if err != nil {
			return nil, err
		}
		return NewCache(kv, CacheConfig{}), nil
	default:
		return nil, fmt.Errorf("secrets: unknown backend %q", cfg.Backend)
	}
}
