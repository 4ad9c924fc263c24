package chaos_test

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"
)

// Receiver modes the fault schedule switches between.
const (
	modeOK      = iota
	modeFail    // answer 500
	modeTimeout // hold the request past the worker's httpTimeout, then 503
)

// delivery is one request the receiver accepted with 200.
type delivery struct {
	key       string
	seq       int
	webhookID string
	at        time.Time
}

// receiver records accepted deliveries and fails on demand. Only a 200
// counts as delivered: a failed or timed-out attempt must be retried.
type receiver struct {
	srv  *http.Server
	url  string
	hold time.Duration

	mu       sync.Mutex
	mode     int
	latency  time.Duration // how long modeOK takes to answer
	accepted []delivery
	failed   int
	timedOut int
	bad      []string // requests that could not be parsed
	got      map[[2]any]bool
	arrived  chan struct{}
}

func newReceiver(t testing.TB, hold time.Duration) *receiver {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &receiver{hold: hold, url: "http://" + l.Addr().String(), got: map[[2]any]bool{}, arrived: make(chan struct{})}
	r.srv = &http.Server{Handler: r}
	go func() { _ = r.srv.Serve(l) }()
	t.Cleanup(func() { _ = r.srv.Close() })
	return r
}

func (r *receiver) setMode(m int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.mode = m
}

// setLatency makes every accepted request take d, as a real receiver's
// processing does.
func (r *receiver) setLatency(d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.latency = d
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(req.Body)
	if err != nil {
		return
	}
	r.mu.Lock()
	mode, latency := r.mode, r.latency
	switch mode {
	case modeFail:
		r.failed++
	case modeTimeout:
		r.timedOut++
	}
	r.mu.Unlock()
	switch mode {
	case modeFail:
		w.WriteHeader(http.StatusInternalServerError)
		return
	case modeTimeout:
		select {
		case <-time.After(r.hold):
		case <-req.Context().Done():
		}
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	if latency > 0 {
		select {
		case <-time.After(latency):
		case <-req.Context().Done():
			return
		}
	}
	var env struct {
		Data struct {
			DocKey string `json:"docKey"`
			After  struct {
				Seq *int `json:"seq"`
			} `json:"after"`
		} `json:"data"`
	}
	id := req.Header.Get("webhook-id")
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := json.Unmarshal(body, &env); err != nil || env.Data.After.Seq == nil || id == "" {
		r.bad = append(r.bad, string(body))
		w.WriteHeader(http.StatusOK) // retrying would not make it parse
		return
	}
	r.accepted = append(r.accepted, delivery{key: env.Data.DocKey, seq: *env.Data.After.Seq, webhookID: id, at: time.Now()})
	r.got[[2]any{env.Data.DocKey, *env.Data.After.Seq}] = true
	close(r.arrived)
	r.arrived = make(chan struct{})
	w.WriteHeader(http.StatusOK)
}

// distinct is how many different (key, seq) were accepted.
func (r *receiver) distinct() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.got)
}

func (r *receiver) snapshot() (acc []delivery, failed, timedOut int, bad []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]delivery(nil), r.accepted...), r.failed, r.timedOut, append([]string(nil), r.bad...)
}

// awaitDistinct waits until n different (key, seq) were accepted, woken by
// each acceptance; it reports false if that did not happen within timeout.
func (r *receiver) awaitDistinct(n int, timeout time.Duration) bool {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		got, arrived := len(r.got), r.arrived
		r.mu.Unlock()
		if got >= n {
			return true
		}
		select {
		case <-arrived:
		case <-deadline.C:
			return false
		}
	}
}
