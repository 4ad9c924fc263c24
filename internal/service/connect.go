package service

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/uber-go/tally/v4"
	tallyprom "github.com/uber-go/tally/v4/prometheus"
	"go.temporal.io/sdk/client"
	sdktally "go.temporal.io/sdk/contrib/tally"

	"github.com/triggerflow/triggerflow/codec"
	"github.com/triggerflow/triggerflow/config"
)

// ConnectNATS connects with the configured credentials and TLS. The
// connection retries forever, including when NATS is down at start-up:
// components wait and report not-ready rather than exit and lose their
// place.
func ConnectNATS(cfg config.NATS, name string, log *slog.Logger) (*nats.Conn, error) {
	opts, err := natsAuth(cfg)
	if err != nil {
		return nil, err
	}
	opts = append(opts,
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250*time.Millisecond),
		nats.RetryOnFailedConnect(true),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			// A deliberate Close reports a nil error; that is no news.
			if err != nil {
				log.Warn("nats disconnected", "error", err)
			}
		}),
		nats.ReconnectHandler(func(c *nats.Conn) {
			log.Info("nats reconnected", "url", c.ConnectedUrlRedacted())
		}),
	)
	nc, err := nats.Connect(cfg.URL, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to NATS at %s: %w", cfg.URL, err)
	}
	return nc, nil
}

// DialNATS connects once, with the configured credentials and TLS, and
// fails at once when NATS is away: for operator commands, which should say
// so rather than wait.
func DialNATS(cfg config.NATS, name string) (*nats.Conn, error) {
	opts, err := natsAuth(cfg)
	if err != nil {
		return nil, err
	}
	nc, err := nats.Connect(cfg.URL, append(opts, nats.Name(name))...)
	if err != nil {
		return nil, fmt.Errorf("connect to NATS at %s: %w", cfg.URL, err)
	}
	return nc, nil
}

// natsAuth turns the credentials and TLS settings into options.
func natsAuth(cfg config.NATS) ([]nats.Option, error) {
	var opts []nats.Option
	cr := cfg.Credentials
	switch {
	case cr.CredsFile != "":
		opts = append(opts, nats.UserCredentials(cr.CredsFile))
	case cr.NKeyFile != "":
		o, err := nats.NkeyOptionFromSeed(cr.NKeyFile)
		if err != nil {
			return nil, fmt.Errorf("nats.credentials.nkeyFile: %w", err)
		}
		opts = append(opts, o)
	case cr.User != "":
		opts = append(opts, nats.UserInfo(cr.User, cr.Password))
	case cr.Token != "":
		opts = append(opts, nats.Token(cr.Token))
	}
	if cfg.TLS.On() {
		tc, err := tlsConfig(cfg.TLS, "nats.tls")
		if err != nil {
			return nil, err
		}
		opts = append(opts, nats.Secure(tc))
	}
	return opts, nil
}

// DialTemporal returns a lazily connecting Temporal client: it does not fail
// when the server is down at start-up; readiness checks report it instead.
// With temporal.codec.enabled its data and failure converters encrypt every
// payload and failure message it writes and decrypt what it reads.
func DialTemporal(cfg config.Temporal, log *slog.Logger, level config.LogLevel, metrics client.MetricsHandler) (client.Client, error) {
	opts := client.Options{
		HostPort:       cfg.HostPort,
		Namespace:      cfg.Namespace,
		Logger:         TemporalLogger(log, level),
		MetricsHandler: metrics,
	}
	if cfg.TLSOn() {
		tc, err := tlsConfig(cfg.TLS, "temporal.tls")
		if err != nil {
			return nil, err
		}
		opts.ConnectionOptions.TLS = tc
	}
	if cfg.APIKey != "" {
		opts.Credentials = client.NewAPIKeyStaticCredentials(cfg.APIKey)
	}
	if cfg.Codec.Enabled {
		cdc, err := LoadCodec(cfg.Codec)
		if err != nil {
			return nil, err
		}
		opts.DataConverter = codec.DataConverter(cdc)
		opts.FailureConverter = codec.FailureConverter(opts.DataConverter)
		log.Info("temporal payloads encrypted", "activeKey", cdc.ActiveKey(), "keys", cdc.KeyIDs())
	}
	c, err := client.NewLazyClient(opts)
	if err != nil {
		return nil, fmt.Errorf("temporal client for %s: %w", cfg.HostPort, err)
	}
	return c, nil
}

// LoadCodec reads the key ring of cfg (temporal.codec.keyFile and
// temporal.codec.keys) and returns the codec encrypting with
// temporal.codec.activeKey. Its errors name the key, never its material.
func LoadCodec(cfg config.Codec) (*codec.Codec, error) {
	ring, err := codec.LoadKeys(cfg.KeyFile, cfg.Keys)
	if err != nil {
		return nil, fmt.Errorf("temporal.codec: %w", err)
	}
	c, err := codec.New(codec.Config{Keys: ring, ActiveKey: cfg.ActiveKey})
	if err != nil {
		return nil, fmt.Errorf("temporal.codec: %w", err)
	}
	return c, nil
}

// TemporalMetrics bridges the Temporal SDK's metrics into reg, so one
// /metrics endpoint shows both the SDK's and Triggerflow's own.
func TemporalMetrics(reg prometheus.Registerer, log *slog.Logger) (client.MetricsHandler, io.Closer) {
	reporter := tallyprom.NewReporter(tallyprom.Options{
		Registerer: reg,
		// Histograms aggregate across replicas; summaries do not.
		DefaultTimerType: tallyprom.HistogramTimerType,
		OnRegisterError: func(err error) {
			log.Warn("temporal metric not registered", "error", err)
		},
	})
	scope, closer := tally.NewRootScope(tally.ScopeOptions{
		CachedReporter:  reporter,
		Separator:       tallyprom.DefaultSeparator,
		SanitizeOptions: &sdktally.PrometheusSanitizeOptions,
	}, time.Second)
	return sdktally.NewMetricsHandler(sdktally.NewPrometheusNamingScope(scope)), closer
}

func tlsConfig(c config.TLS, field string) (*tls.Config, error) {
	tc := &tls.Config{ServerName: c.ServerName, MinVersion: tls.VersionTLS12}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("%s.caFile: %w", field, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s.caFile: %s holds no PEM certificate", field, c.CAFile)
		}
		tc.RootCAs = pool
	}
	if c.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("%s.certFile/keyFile: %w", field, err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}
