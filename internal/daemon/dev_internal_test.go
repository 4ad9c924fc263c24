package daemon

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/triggerflow/triggerflow/secrets"
	"github.com/triggerflow/triggerflow/signature"
	"github.com/triggerflow/triggerflow/trigger"
)

// readyUntilDone is a service that is ready at once and runs until its
// context ends.
func readyUntilDone(ctx context.Context, o Options) error {
	o.OnReady("")
	<-ctx.Done()
	return nil
}

func TestServiceGroup(t *testing.T) {
	t.Parallel()
	log := slog.New(slog.DiscardHandler)

	t.Run("one failing stops the others", func(t *testing.T) {
		t.Parallel()
		// The dev stack must return when a service fails, not wait for
		// Ctrl-C with the other two still running.
		boom := errors.New("boom")
		g := startServices(context.Background(), log, []Service{
			{"watcher", readyUntilDone},
			{"ingest", func(context.Context, Options) error { return boom }},
			{"worker", readyUntilDone},
		}, nil)
		err := g.ready(context.Background())
		require.ErrorIs(t, err, boom)
		require.EqualError(t, err, "ingest: boom")
		g.stop()
	})
	t.Run("ready, then stopped by ctx", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithCancel(context.Background())
		g := startServices(ctx, log, []Service{{"watcher", readyUntilDone}, {"worker", readyUntilDone}}, nil)
		require.NoError(t, g.ready(ctx))
		cancel()
		require.NoError(t, g.wait(ctx))
		g.stop()
	})
	t.Run("a failure after start-up ends the wait", func(t *testing.T) {
		t.Parallel()
		boom := errors.New("boom")
		g := startServices(context.Background(), log, []Service{{"worker", func(ctx context.Context, o Options) error {
			o.OnReady("")
			return boom
		}}}, nil)
		require.NoError(t, g.ready(context.Background()))
		require.ErrorIs(t, g.wait(context.Background()), boom)
		g.stop()
	})
}

// lockedBuffer is the dev stack's Out, written by its goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	require.NoError(t, os.WriteFile(path, []byte(content), 0o600))
}

const (
	demoOrders = `
tenant: demo
triggers:
  - triggerId: order-paid
    collection: orders
    url: http://127.0.0.1:8090/hooks/order-paid
    secretsRef: default
`
	acmeOrders = `
tenant: acme
triggers:
  - triggerId: order-created
    collection: orders
    url: http://127.0.0.1:8090/hooks/acme
    secretsRef: default
`
)

func devConfig(t *testing.T, triggers string) DevConfig {
	t.Helper()
	return DevConfig{DataDir: t.TempDir(), Triggers: triggers, Out: &lockedBuffer{}}.withDefaults()
}

func TestCheckDevTriggers(t *testing.T) {
	t.Parallel()
	twoTenants := func(t *testing.T) string {
		dir := t.TempDir()
		writeFile(t, filepath.Join(dir, "demo.yaml"), demoOrders)
		writeFile(t, filepath.Join(dir, "acme.yaml"), acmeOrders)
		return dir
	}

	t.Run("every tenant of the files", func(t *testing.T) {
		t.Parallel()
		d, err := checkDevTriggers(devConfig(t, twoTenants(t)))
		require.NoError(t, err)
		require.Equal(t, "", d.cfg.Tenant)
		require.ElementsMatch(t, []string{"acme", "demo"}, slices.Collect(maps.Keys(d.initial.Triggers)))
		w := devWatcherFile(d.cfg, &DevStack{NATSURL: "nats://127.0.0.1:4222"})
		require.Equal(t, []string{"*"}, w.Watcher.Tenants)
		require.Empty(t, w.Watcher.Tenant)
		require.NoError(t, w.Validate())
	})
	t.Run("a problem in one tenant's file fails the start, listed", func(t *testing.T) {
		t.Parallel()
		dir := twoTenants(t)
		writeFile(t, filepath.Join(dir, "acme.yaml"), strings.Replace(acmeOrders, "collection: orders", "collection: orders\n    timeout: soon", 1))
		_, err := checkDevTriggers(devConfig(t, dir))
		require.ErrorIs(t, err, trigger.ErrInvalidTriggers)
		require.ErrorContains(t, err, "acme.yaml:")
		require.ErrorContains(t, err, `trigger "order-created": timeout`)
	})
	t.Run("--tenant narrows to one", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		writeFile(t, filepath.Join(dir, "demo.yaml"), demoOrders)
		cfg := devConfig(t, dir)
		cfg.Tenant = "demo"
		d, err := checkDevTriggers(cfg)
		require.NoError(t, err)
		w := devWatcherFile(d.cfg, &DevStack{NATSURL: "nats://127.0.0.1:4222"})
		require.Equal(t, "demo", w.Watcher.Tenant)
		require.Empty(t, w.Watcher.Tenants)
	})
	t.Run("--tenant with another tenant's files says what to do", func(t *testing.T) {
		t.Parallel()
		cfg := devConfig(t, twoTenants(t))
		cfg.Tenant = "demo"
		_, err := checkDevTriggers(cfg)
		require.ErrorContains(t, err, `tenant: "acme" does not match the engine's tenant scope "demo"`)
		require.ErrorContains(t, err, "leave --tenant empty to serve every tenant")
	})
	t.Run("postgres without a tenant column serves the files' one tenant", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		writeFile(t, filepath.Join(dir, "acme.yaml"), acmeOrders)
		cfg := devConfig(t, dir)
		cfg.PostgresDSN = "postgres://127.0.0.1/app"
		d, err := checkDevTriggers(cfg)
		require.NoError(t, err)
		require.Equal(t, "acme", d.cfg.Tenant)

		cfg = devConfig(t, twoTenants(t))
		cfg.PostgresDSN = "postgres://127.0.0.1/app"
		_, err = checkDevTriggers(cfg)
		require.ErrorContains(t, err, "--postgres-tenant-column")

		cfg.PostgresTenantColumn = "tenant"
		d, err = checkDevTriggers(cfg)
		require.NoError(t, err)
		w := devWatcherFile(d.cfg, &DevStack{NATSURL: "nats://127.0.0.1:4222"})
		require.Equal(t, []string{"*"}, w.Watcher.Tenants)
		require.Equal(t, "tenant", w.Watcher.Postgres.TenantColumn)
		require.NoError(t, w.Validate())
	})
}

// TestDevSecretsPerTenant: every tenant gets its own secret, for "default"
// and for every reference its triggers name, and the receiver is told which
// reference each trigger signs with.
func TestDevSecretsPerTenant(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "demo.yaml"), demoOrders)
	writeFile(t, filepath.Join(dir, "acme.yaml"), acmeOrders+`  - triggerId: invoice
    collection: invoices
    url: http://127.0.0.1:8090/hooks/invoice
    secretsRef: billing
`)
	d, err := checkDevTriggers(devConfig(t, dir))
	require.NoError(t, err)
	require.NoError(t, d.ensureSecrets(d.initial))

	store := secrets.NewDir(devSecretsDir(d.cfg))
	resolve := func(tenant, ref string) signature.Secret {
		t.Helper()
		list, err := store.Resolve(context.Background(), tenant, ref)
		require.NoError(t, err)
		require.Len(t, list, 1)
		return list[0]
	}
	demo, acme, billing := resolve("demo", "default"), resolve("acme", "default"), resolve("acme", "billing")
	require.NotEqual(t, demo, acme)
	require.NotEqual(t, acme, billing)
	_, err = store.Resolve(context.Background(), "demo", "billing")
	require.ErrorIs(t, err, secrets.ErrNotFound, "only the references a tenant uses")

	require.Equal(t, "billing", d.secretsRef("acme", "invoice"))
	require.Equal(t, "default", d.secretsRef("acme", "order-created"))
	require.Equal(t, "", d.secretsRef("demo", "invoice"))

	require.NoError(t, d.ensureSecrets(d.initial))
	require.Equal(t, acme, resolve("acme", "default"), "kept across runs")
}

// TestDebounce: a burst of events is one call, made once the quiet period
// after the last event has passed; the timers of earlier events count for
// nothing.
func TestDebounce(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	events := make(chan struct{})
	timers := make(chan chan time.Time)
	fired := make(chan struct{}, 10)
	done := make(chan struct{})
	go func() {
		defer close(done)
		debounce(ctx, events,
			func() <-chan time.Time { c := make(chan time.Time, 1); timers <- c; return c },
			func() { fired <- struct{}{} })
	}()
	burst := func(n int) []chan time.Time {
		var ts []chan time.Time
		for range n {
			events <- struct{}{}
			ts = append(ts, <-timers)
		}
		return ts
	}

	ts := burst(3)
	ts[0] <- time.Now()
	ts[1] <- time.Now()
	events <- struct{}{} // the loop has seen the stale timers by now
	ts = append(ts, <-timers)
	require.Empty(t, fired, "earlier timers do not fire")
	ts[3] <- time.Now()
	<-fired
	ts = burst(2)
	ts[1] <- time.Now()
	<-fired
	cancel()
	<-done
	require.Empty(t, fired, "one call per burst")
}

// TestDevTriggersFollowEdits: saving a trigger file, a new tenant's file
// included, asks the watcher to reload, after the new tenant got its
// secret; a broken file is reported and still reloads (the watcher keeps
// the previous triggers of the tenants it fails).
func TestDevTriggersFollowEdits(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "demo.yaml"), demoOrders)
	cfg := devConfig(t, dir)
	out := cfg.Out.(*lockedBuffer)
	d, err := checkDevTriggers(cfg)
	require.NoError(t, err)
	reload := make(chan struct{}, 1)
	stop, err := d.watch(context.Background(), slog.New(slog.DiscardHandler), reload)
	require.NoError(t, err)
	defer stop()

	// An editor's scratch files are no change; a new tenant's file is.
	writeFile(t, filepath.Join(dir, ".acme.yaml.swp"), "x")
	writeFile(t, filepath.Join(dir, "acme.yaml~"), "x")
	writeFile(t, filepath.Join(dir, "acme.yaml"), acmeOrders)
	awaitReload(t, reload, out, "trigger files changed: reloading acme (1 trigger), demo (1 trigger)")
	_, err = secrets.NewDir(devSecretsDir(d.cfg)).Resolve(context.Background(), "acme", "default")
	require.NoError(t, err, "the new tenant's secret exists before the watcher reloads")

	// A subdirectory made later is read, and watched.
	sub := filepath.Join(dir, "more")
	require.NoError(t, os.Mkdir(sub, 0o755))
	writeFile(t, filepath.Join(sub, "beta.yaml"), "tenant: beta\ntriggers:\n  - triggerId: [\n")
	awaitReload(t, reload, out, "tenants with problems keep their previous triggers")
	require.Contains(t, out.String(), "beta.yaml")
	writeFile(t, filepath.Join(sub, "beta.yaml"), strings.ReplaceAll(acmeOrders, "acme", "beta"))
	awaitReload(t, reload, out, "reloading acme (1 trigger), beta (1 trigger), demo (1 trigger)")
}

// awaitReload waits for reload requests until out has want (it is written
// before each request).
func awaitReload(t *testing.T, reload <-chan struct{}, out *lockedBuffer, want string) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case <-reload:
			if strings.Contains(out.String(), want) {
				return
			}
		case <-deadline:
			t.Fatalf("no reload with %q; out:\n%s", want, out.String())
		}
	}
}

// TestDevTriggersFollowOneFile: with --triggers naming a file, saving it by
// renaming a new file over it (as editors do) is a change.
func TestDevTriggersFollowOneFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "orders.yaml")
	writeFile(t, file, demoOrders)
	cfg := devConfig(t, file)
	out := cfg.Out.(*lockedBuffer)
	d, err := checkDevTriggers(cfg)
	require.NoError(t, err)
	require.False(t, d.dir)
	reload := make(chan struct{}, 1)
	stop, err := d.watch(context.Background(), slog.New(slog.DiscardHandler), reload)
	require.NoError(t, err)
	defer stop()

	writeFile(t, filepath.Join(dir, "other.yaml"), acmeOrders) // not the file
	tmp := filepath.Join(dir, "orders.yaml.new")
	writeFile(t, tmp, demoOrders+`  - triggerId: order-deleted
    collection: orders
    events: [delete]
    url: http://127.0.0.1:8090/hooks/order-deleted
`)
	require.NoError(t, os.Rename(tmp, file))
	awaitReload(t, reload, out, "reloading demo (2 triggers)")
	require.NotContains(t, out.String(), "acme", "other.yaml is not the file")
}
