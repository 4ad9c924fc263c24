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

// newHTTPClient builds the delivery client. Redirects are not followed:
// Standard Webhooks treats a 3xx as a failed delivery, and following one
// would re-send a signed body to a host the trigger never named.
func newHTTPClient(cfg Config) *retryablehttp.Client {
	dialer := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	base := &http.Transport{
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   cfg.MaxConnsPerHost,
		MaxConnsPerHost:       cfg.MaxConnsPerHost,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
	// The policy checks the address actually dialled, after DNS
	// resolution, and turns proxies off so it sees the receiver's address.
	transport := cfg.Egress.Transport(base, dialer)
	retries := max(cfg.ConnectRetries, 0)
	return &retryablehttp.Client{
		HTTPClient: &http.Client{
			Transport: transport,
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
	}
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
