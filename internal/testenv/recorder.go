package testenv

import (
	"cmp"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/triggerflow/triggerflow/schema"
	"github.com/triggerflow/triggerflow/signature"
)

// Request is one request as the webhook recorder received it.
type Request struct {
	Method     string
	Path       string
	Query      string
	Headers    http.Header
	Body       []byte
	ReceivedAt time.Time
	// Seq numbers requests from 0 in arrival order, so a Responder can
	// script "fail the first attempt, accept the retry".
	Seq int
}

// Response is what the recorder answers. A zero Status means 200.
type Response struct {
	Status  int
	Headers http.Header // e.g. Retry-After
	Body    []byte
	// Delay holds the response back, to make the caller time out. It ends
	// early, without a response, when the caller gives up or the recorder
	// closes.
	Delay time.Duration
}

// Responder decides the response to a recorded request. It is called
// concurrently for concurrent requests.
type Responder func(r *Request) Response

// WebhookRecorder is an HTTP server on 127.0.0.1 that records every request
// and answers as programmed (200 with an empty body by default). It holds
// every request to the delivery contract (CheckDelivery) and fails the test
// on a request that breaks it, unless started with AnyRequests.
type WebhookRecorder struct {
	srv *httptest.Server
	t   testing.TB
	any bool

	mu        sync.Mutex
	requests  []Request
	responder Responder
	arrived   chan struct{} // closed and replaced on every request

	closing chan struct{} // closed first on cleanup to cut Delays short
}

// RecorderOption configures a WebhookRecorder.
type RecorderOption func(*WebhookRecorder)

// AnyRequests makes the recorder take requests that are not Triggerflow
// deliveries, for tests of the recorder itself or of other traffic.
func AnyRequests() RecorderOption {
	return func(w *WebhookRecorder) { w.any = true }
}

// Recorder starts a webhook recorder, closed on cleanup.
func Recorder(t testing.TB, opts ...RecorderOption) *WebhookRecorder {
	t.Helper()
	w := &WebhookRecorder{t: t, arrived: make(chan struct{}), closing: make(chan struct{})}
	for _, o := range opts {
		o(w)
	}
	// httptest.NewServer may pick [::1] when 127.0.0.1 is unavailable;
	// tests are promised 127.0.0.1, so listen explicitly.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testenv: recorder listen: %v", err)
	}
	w.srv = &httptest.Server{Listener: l, Config: &http.Server{Handler: w}}
	w.srv.Start()
	t.Cleanup(func() {
		// Close waits for in-flight requests, and one held by a long
		// Delay whose caller is still waiting would otherwise stall it.
		close(w.closing)
		w.srv.Close()
	})
	return w
}

// URL is the server's base URL, e.g. http://127.0.0.1:41234.
func (w *WebhookRecorder) URL() string { return w.srv.URL }

// Respond replaces the responder for requests arriving from now on.
func (w *WebhookRecorder) Respond(fn Responder) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.responder = fn
}

// Requests returns a snapshot of the requests received so far, in arrival
// order.
func (w *WebhookRecorder) Requests() []Request {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]Request, len(w.requests))
	copy(out, w.requests)
	return out
}

// WaitFor blocks until at least n requests have arrived and returns the
// first n, failing the test if that takes longer than timeout.
func (w *WebhookRecorder) WaitFor(t testing.TB, n int, timeout time.Duration) []Request {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		w.mu.Lock()
		got, arrived := len(w.requests), w.arrived
		if got >= n {
			out := make([]Request, n)
			copy(out, w.requests)
			w.mu.Unlock()
			return out
		}
		w.mu.Unlock()
		select {
		case <-arrived:
		case <-deadline.C:
			t.Fatalf("testenv: webhook recorder got %d of %d requests within %s", got, n, timeout)
		}
	}
}

func (w *WebhookRecorder) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		// The caller went away mid-body; there is nothing meaningful to
		// record or answer.
		return
	}
	req := Request{
		Method:     r.Method,
		Path:       r.URL.Path,
		Query:      r.URL.RawQuery,
		Headers:    r.Header.Clone(),
		Body:       body,
		ReceivedAt: time.Now(),
	}
	// Checked before the request is recorded: a test that stops the
	// sender as soon as its requests arrived must not stop it while the
	// check holds the answer back.
	var broken error
	if !w.any {
		broken = CheckDelivery(req.Method, req.Headers, req.Body)
	}

	w.mu.Lock()
	req.Seq = len(w.requests)
	w.requests = append(w.requests, req)
	close(w.arrived)
	w.arrived = make(chan struct{})
	responder := w.responder
	w.mu.Unlock()

	if broken != nil {
		// Errorf, not Fatalf: this is not the test's goroutine. Cleanup
		// closes the server only after in-flight requests finish, so the
		// test is still running here.
		w.t.Errorf("testenv: webhook recorder: request %d (%s %s) breaks the delivery contract: %v", req.Seq, req.Method, req.Path, broken)
	}

	resp := Response{}
	if responder != nil {
		resp = responder(&req)
	}
	if resp.Delay > 0 {
		timer := time.NewTimer(resp.Delay)
		defer timer.Stop()
		select {
		case <-timer.C:
		case <-r.Context().Done():
			// Abort rather than return: returning would send an implicit
			// 200 to a caller that may still be listening.
			panic(http.ErrAbortHandler)
		case <-w.closing:
			panic(http.ErrAbortHandler)
		}
	}
	for k, vs := range resp.Headers {
		for _, v := range vs {
			rw.Header().Add(k, v)
		}
	}
	resp.Status = cmp.Or(resp.Status, http.StatusOK)
	rw.WriteHeader(resp.Status)
	_, _ = rw.Write(resp.Body)
}

// CheckDelivery reports how a request breaks the contract of a Triggerflow
// delivery (docs/receivers.md): a JSON POST whose body matches the schema
// (schema.ValidateDelivery), whose webhook-id is the body's eventId, whose
// webhook-timestamp is unix seconds and whose signature and bearer token,
// when present, have their wire form. It cannot check the signature or the
// token themselves, for want of the secret and the key set.
func CheckDelivery(method string, h http.Header, body []byte) error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if method != http.MethodPost {
		bad("method is %s, not POST", method)
	}
	if ct := h.Get("Content-Type"); ct != "application/json" {
		bad("Content-Type is %q, not application/json", ct)
	}
	if err := schema.ValidateDelivery(body); err != nil {
		errs = append(errs, err)
	}
	var env struct {
		Timestamp string `json:"timestamp"`
		Data      struct {
			EventID    string `json:"eventId"`
			CommitTime string `json:"commitTime"`
		} `json:"data"`
	}
	if json.Unmarshal(body, &env) == nil {
		if id := h.Get(signature.HeaderID); id != env.Data.EventID {
			bad("%s %q is not the body's eventId %q", signature.HeaderID, id, env.Data.EventID)
		}
		if env.Timestamp != env.Data.CommitTime {
			bad("timestamp %q is not data.commitTime %q", env.Timestamp, env.Data.CommitTime)
		}
	}
	if ts := h.Get(signature.HeaderTimestamp); !isUnixSeconds(ts) {
		bad("%s %q is not unix seconds", signature.HeaderTimestamp, ts)
	}
	if sigs := h.Values(signature.HeaderSignature); len(sigs) > 0 {
		if len(sigs) > 1 {
			bad("%s is sent %d times", signature.HeaderSignature, len(sigs))
		}
		for entry := range strings.FieldsSeq(sigs[0]) {
			v, mac, _ := strings.Cut(entry, ",")
			if b, err := base64.StdEncoding.DecodeString(mac); v != "v1" || err != nil || len(b) != 32 {
				bad("%s entry %q is not v1,<base64 HMAC-SHA256>", signature.HeaderSignature, entry)
			}
		}
		if strings.TrimSpace(sigs[0]) == "" {
			bad("%s is empty", signature.HeaderSignature)
		}
	}
	if auth := h.Values("Authorization"); len(auth) > 0 {
		// The worker's token is a JWT, but senders in tests may use
		// others; RFC 6750's syntax is what every receiver can rely on.
		token, ok := strings.CutPrefix(auth[0], "Bearer ")
		if len(auth) > 1 || !ok || !bearerToken.MatchString(token) {
			bad("Authorization is not one \"Bearer <token>\"")
		}
	}
	return errors.Join(errs...)
}

// bearerToken is RFC 6750's b64token.
var bearerToken = regexp.MustCompile(`^[A-Za-z0-9._~+/-]+=*$`)

func isUnixSeconds(s string) bool {
	n, err := strconv.ParseInt(s, 10, 64)
	return err == nil && n > 0 && strconv.FormatInt(n, 10) == s
}
