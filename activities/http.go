package activities

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/go-retryablehttp"
)

// HTTPOptions customise the client that POSTs webhooks, for what the
// worker's file does not cover: TLS to receivers (client certificates, a
// private CA), dialing (local address, resolver), and instrumentation. The
// zero value is the client the worker's file describes.
//
// The egress guard (Config.Egress) is applied to what they supply: it
// checks every address the transport dials, after name resolution. What the
// guard cannot see is the caller's responsibility, as each field says.
type HTTPOptions struct {
	// Transport is the base transport: its TLS settings, HTTP/2, timeouts
	// and idle pool are kept. It is cloned, never modified. The clone has
	// no proxy and dials through Dialer under the guard, so its Proxy,
	// DialContext and DialTLSContext are dropped: through a proxy or a
	// dial function of its own the guard would not see the receiver's
	// address. MaxConnsPerHost and MaxIdleConnsPerHost are set from
	// Config.MaxConnsPerHost, which the worker's file controls. Nil means
	// the worker's own: HTTP/2 when the receiver offers it, a 10s TLS
	// handshake timeout, idle connections kept for 90s.
	Transport *http.Transport
	// Dialer is the base dialer (timeouts, keep-alive, local address,
	// resolver). It is copied; a Control or ControlContext it has still
	// runs, before the guard's. Nil means a 10s connect timeout and 30s
	// keep-alive.
	Dialer *net.Dialer
	// Wrap decorates the guarded transport, for tracing or request
	// metrics. It must send every request through the RoundTripper it is
	// given: a RoundTripper that dials by itself or hands the request to
	// another client bypasses the guard, and the caller then answers for
	// what it reaches. It must not follow redirects either, or it re-sends a
	// signed body to a host the trigger never named. It must not return
	// nil. Nil means no wrapper.
	Wrap func(http.RoundTripper) http.RoundTripper
}

// newHTTPClient builds the delivery client. Redirects are not followed:
// Standard Webhooks treats a 3xx as a failed delivery, and following one
// would re-send a signed body to a host the trigger never named.
func newHTTPClient(cfg Config, opts HTTPOptions) (*retryablehttp.Client, error) {
	dialer := opts.Dialer
	if dialer == nil {
		dialer = &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	}
	base := opts.Transport
	if base == nil {
		base = &http.Transport{
			ForceAttemptHTTP2:     true,
			MaxIdleConns:          1024,
			IdleConnTimeout:       90 * time.Second,
			TLSHandshakeTimeout:   10 * time.Second,
			ExpectContinueTimeout: time.Second,
		}
	}
	// The policy checks the address actually dialled, after DNS
	// resolution, and turns proxies off so it sees the receiver's address.
	// Transport clones base, so the caller's transport is left as it was.
	transport := cfg.Egress.Transport(base, dialer)
	transport.MaxIdleConnsPerHost = cfg.MaxConnsPerHost
	transport.MaxConnsPerHost = cfg.MaxConnsPerHost
	var rt http.RoundTripper = transport
	if opts.Wrap != nil {
		if rt = opts.Wrap(transport); rt == nil {
			return nil, errors.New("activities: HTTPOptions.Wrap returned a nil RoundTripper")
		}
	}
	retries := max(cfg.ConnectRetries, 0)
	return &retryablehttp.Client{
		HTTPClient: &http.Client{
			Transport: rt,
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse
			},
		},
		// No Logger: its messages carry the URL, which for many webhook
		// providers embeds a credential in the path.
		RetryMax:     retries,
		RetryWaitMin: 50 * time.Millisecond,
		RetryWaitMax: 500 * time.Millisecond,
		CheckRetry:   retryRefused,
		Backoff: func(lo, hi time.Duration, n int, _ *http.Response) time.Duration {
			return min(lo<<n, hi)
		},
		// Hand back the last response or error as-is, so the status
		// mapping sees exactly what the receiver said.
		ErrorHandler: retryablehttp.PassthroughErrorHandler,
	}, nil
}

// retryRefused retries only a refused connection: the request never left,
// so a retry cannot deliver twice. Everything else is one Temporal attempt.
func retryRefused(ctx context.Context, _ *http.Response, err error) (bool, error) {
	if ctx.Err() != nil || err == nil {
		return false, nil
	}
	return errors.Is(err, syscall.ECONNREFUSED), nil
}

// parseRetryAfter reads Retry-After as delay-seconds or an HTTP-date
// (RFC 9110 §10.2.3). ok is false when the header is absent or malformed;
// a date in the past means "now" (zero delay, ok).
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs < 0 {
			return 0, false
		}
		// Saturate instead of overflowing; the caller caps it anyway.
		if secs > int64(time.Duration(1<<63-1)/time.Second) {
			return time.Duration(1<<63 - 1), true
		}
		return time.Duration(secs) * time.Second, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	return max(t.Sub(now), 0), true
}
