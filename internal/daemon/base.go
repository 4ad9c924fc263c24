package daemon

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.temporal.io/sdk/client"

	"github.com/triggerflow/triggerflow/config"
	"github.com/triggerflow/triggerflow/internal/service"
	"github.com/triggerflow/triggerflow/streams"
)

// base is what every service opens first: its logger, its ops server and
// its NATS connection.
type base struct {
	log *slog.Logger
	ops *service.OpsServer
	nc  *nats.Conn
	js  jetstream.JetStream
}

func openBase(name string, httpCfg config.HTTP, natsCfg config.NATS, opts Options) (*base, error) {
	b := &base{log: opts.Logger.With("service", name)}
	var err error
	if b.ops, err = service.NewOpsServer(httpCfg.Addr, opts.Registry, b.log); err != nil {
		return nil, fmt.Errorf("ops server on %s: %w", httpCfg.Addr, err)
	}
	if httpCfg.Pprof {
		b.ops.EnablePprof()
	}
	if b.nc, err = service.ConnectNATS(natsCfg, "triggerflow-"+name, b.log); err != nil {
		b.ops.Close()
		return nil, err
	}
	if b.js, err = jetstream.New(b.nc); err != nil {
		b.Close()
		return nil, err
	}
	return b, nil
}

// ensureStreams waits for NATS and creates or verifies the streams. false
// with a nil error means ctx ended while waiting: a clean stop.
func (b *base) ensureStreams(ctx context.Context, n config.NATS) (bool, error) {
	if err := streams.EnsureWhenReachable(ctx, b.js, n.Streams(), b.log); err != nil {
		if ctx.Err() != nil {
			return false, nil
		}
		return false, fmt.Errorf("streams: %w", err)
	}
	return true, nil
}

func (b *base) Close() {
	b.nc.Close()
	b.ops.Close()
}

// dialTemporal connects to Temporal with the SDK's metrics on reg. The
// returned close closes the client, then its metrics.
func dialTemporal(cfg config.Temporal, level config.LogLevel, log *slog.Logger, reg *prometheus.Registry) (client.Client, func(), error) {
	metrics, closeMetrics := service.TemporalMetrics(reg, log)
	tc, err := service.DialTemporal(cfg, log, level, metrics)
	if err != nil {
		closeMetrics.Close()
		return nil, nil, err
	}
	return tc, func() {
		tc.Close()
		closeMetrics.Close()
	}, nil
}
