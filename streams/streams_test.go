package streams_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/triggerflow/triggerflow/config"
	"github.com/triggerflow/triggerflow/internal/testenv"
	"github.com/triggerflow/triggerflow/streams"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func natsConfig(mode streams.Provisioning) streams.Config {
	return config.NATS{Provisioning: mode}.WithDefaults().Streams()
}

func TestCreateThenVerify(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	js, err := jetstream.New(testenv.NATS(t).Conn(t))
	require.NoError(t, err)

	verify := natsConfig(streams.ProvisionVerify)
	require.ErrorIs(t, streams.Ensure(ctx, js, verify), streams.ErrMissing, "verify never creates")

	create := natsConfig(streams.ProvisionCreate)
	require.NoError(t, streams.Ensure(ctx, js, create))
	for _, want := range streams.Configs(create) {
		s, err := js.Stream(ctx, want.Name)
		require.NoError(t, err)
		require.Empty(t, streams.Diff(want, s.CachedInfo().Config))
	}
	require.NoError(t, streams.Ensure(ctx, js, verify), "our own streams verify")
	require.NoError(t, streams.Ensure(ctx, js, create), "create is idempotent")
}

func TestVerifyRefusesDrift(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	js, err := jetstream.New(testenv.NATS(t).Conn(t))
	require.NoError(t, err)
	require.NoError(t, streams.Ensure(ctx, js, natsConfig(streams.ProvisionCreate)))

	// Someone changes the stream behind our back.
	drifted := natsConfig(streams.ProvisionCreate)
	drifted.MaxAge = time.Hour
	drifted.DuplicateWindow = time.Minute
	_, err = js.UpdateStream(ctx, streams.Configs(drifted)[0])
	require.NoError(t, err)

	err = streams.Ensure(ctx, js, natsConfig(streams.ProvisionVerify))
	require.ErrorIs(t, err, streams.ErrDrift)
	require.ErrorContains(t, err, `stream "TRIGGERS"`)
	require.ErrorContains(t, err, "max age is 1h0m0s, want 168h0m0s")
	require.ErrorContains(t, err, "duplicate window is 1m0s, want 2m0s")

	require.NoError(t, streams.Ensure(ctx, js, natsConfig(streams.ProvisionCreate)), "create mode repairs drift")
	require.NoError(t, streams.Ensure(ctx, js, natsConfig(streams.ProvisionVerify)))
}

// signalWriter reports each log line on a channel, so a test can wait for
// a retry to be logged instead of sleeping.
type signalWriter chan struct{}

func (w signalWriter) Write(p []byte) (int, error) {
	select {
	case w <- struct{}{}:
	default:
	}
	return len(p), nil
}

// A service starting while NATS is down waits for it instead of failing
// its start (the chaos suite saw the watcher exit when started during a
// NATS restart); a definite answer still returns at once.
func TestEnsureWhenReachableWaitsForNATS(t *testing.T) {
	t.Parallel()
	ns := testenv.NATS(t)
	js, err := jetstream.New(ns.Conn(t), jetstream.WithDefaultTimeout(300*time.Millisecond))
	require.NoError(t, err)
	ctx := t.Context()

	require.ErrorIs(t, streams.EnsureWhenReachable(ctx, js, natsConfig(streams.ProvisionVerify), slog.New(slog.DiscardHandler)),
		streams.ErrMissing, "a definite answer is not retried")

	ns.Shutdown()
	retried := make(signalWriter, 1)
	done := make(chan error, 1)
	go func() {
		done <- streams.EnsureWhenReachable(ctx, js, natsConfig(streams.ProvisionCreate), slog.New(slog.NewTextHandler(retried, nil)))
	}()
	select {
	case <-retried:
	case err := <-done:
		t.Fatalf("returned while NATS was down: %v", err)
	}
	ns.Restart(t)
	require.NoError(t, <-done)
	require.NoError(t, streams.Ensure(ctx, js, natsConfig(streams.ProvisionVerify)), "the streams exist now")
}
