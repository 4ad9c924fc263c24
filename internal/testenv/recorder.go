package testenv

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
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
// and answers as programmed (200 with an empty body by default).
type WebhookRecorder struct {
	srv *httptest.Server

	mu        sync.Mutex
	requests  []Request
	responder Responder
	arrived   chan struct{} // closed and replaced on every request

	closing chan struct{} // closed first on cleanup to cut Delays short
}

// Recorder starts a webhook recorder, closed on cleanup.
func Recorder(t testing.TB) *WebhookRecorder {
	t.Helper()
	w := &WebhookRecorder{arrived: make(chan struct{}), closing: make(chan struct{})}
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

	w.mu.Lock()
	req.Seq = len(w.requests)
	w.requests = append(w.requests, req)
	close(w.arrived)
	w.arrived = make(chan struct{})
	responder := w.responder
	w.mu.Unlock()

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
	if resp.Status == 0 {
		resp.Status = http.StatusOK
	}
	rw.WriteHeader(resp.Status)
	_, _ = rw.Write(resp.Body)
}
