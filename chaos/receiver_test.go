package chaos_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
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
	// eventID, and the images as imageDigest reads them, when the
	// receiver keeps image digests (keepImageDigests).
	eventID, before, after string
	arrived                time.Time // when the request came in
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

	keepImages bool           // see keepImageDigests
	onAccept   func(delivery) // see setOnAccept

	digestMu sync.Mutex
	digests  map[[sha256.Size]byte]string // imageDigest by SHA-256 of the bytes received
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
	arrived := time.Now()
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
			DocKey  string          `json:"docKey"`
			EventID string          `json:"eventId"`
			Before  json.RawMessage `json:"before"`
			After   json.RawMessage `json:"after"`
		} `json:"data"`
	}
	id := req.Header.Get("webhook-id")
	err = json.Unmarshal(body, &env)
	var seq *int
	if err == nil {
		seq, err = seqOf(env.Data.After)
	}
	d := delivery{key: env.Data.DocKey, webhookID: id, eventID: env.Data.EventID, arrived: arrived}
	r.mu.Lock()
	keep := r.keepImages
	r.mu.Unlock()
	if err == nil && keep {
		if d.before, err = r.imageDigest(env.Data.Before); err == nil {
			d.after, err = r.imageDigest(env.Data.After)
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil || seq == nil || id == "" {
		r.bad = append(r.bad, string(body))
		w.WriteHeader(http.StatusOK) // retrying would not make it parse
		return
	}
	d.seq, d.at = *seq, time.Now()
	r.accepted = append(r.accepted, d)
	r.got[[2]any{d.key, d.seq}] = true
	if r.onAccept != nil {
		r.onAccept(d)
	}
	close(r.arrived)
	r.arrived = make(chan struct{})
	w.WriteHeader(http.StatusOK)
}

// keepImageDigests makes the receiver record each delivery's event id and
// the digests of its before and after images.
func (r *receiver) keepImageDigests() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.keepImages = true
}

// setOnAccept makes the receiver call f with every delivery it accepts,
// before it answers 200; nil stops it. f runs with the receiver locked and
// must not call its methods.
func (r *receiver) setOnAccept(f func(delivery)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.onAccept = f
}

// imageDigest is imageDigest of an image received, computed once per
// distinct bytes: an update's before image is the previous change's after,
// and a repeated delivery carries both again.
func (r *receiver) imageDigest(raw json.RawMessage) (string, error) {
	sum := sha256.Sum256(raw)
	r.digestMu.Lock()
	d, ok := r.digests[sum]
	r.digestMu.Unlock()
	if ok {
		return d, nil
	}
	d, err := imageDigest(raw)
	if err != nil {
		return "", err
	}
	r.digestMu.Lock()
	if r.digests == nil {
		r.digests = map[[sha256.Size]byte]string{}
	}
	r.digests[sum] = d
	r.digestMu.Unlock()
	return d, nil
}

// seqOf reads the top-level "seq" of a document, nil if it has none. It
// reads no further than that member.
func seqOf(doc json.RawMessage) (*int, error) {
	dec := json.NewDecoder(bytes.NewReader(doc))
	if tok, err := dec.Token(); err != nil {
		return nil, err
	} else if tok != json.Delim('{') {
		return nil, fmt.Errorf("not a JSON object: %v", tok)
	}
	for dec.More() {
		key, err := dec.Token()
		if err != nil {
			return nil, err
		}
		if key == "seq" {
			var n int
			if err := dec.Decode(&n); err != nil {
				return nil, err
			}
			return &n, nil
		}
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return nil, err
		}
	}
	return nil, nil
}

// imageDigest identifies a JSON value regardless of its encoding: the
// SHA-256 of its re-encoding after an unmarshal that keeps numbers as
// written (object keys sorted, strings escaped one way), so two documents
// digest alike exactly when they unmarshal equal. An absent or null image
// digests as "".
func imageDigest(raw json.RawMessage) (string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return "", err
	}
	b, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
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
