package bench

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// Mark is what every benchmark event carries in its payload (under
// data.after for Triggerflow's webhook body, the same place in the raw
// rows' bodies): a unique id and the commit time in Unix nanoseconds.
type Mark struct {
	ID string `json:"id"`
	T  int64  `json:"t"`
}

type body struct {
	Data struct {
		After Mark `json:"after"`
	} `json:"data"`
}

// Receiver answers every POST 204 at once and records each id's first
// arrival, so a row can wait for its deliveries and compute latencies.
type Receiver struct {
	URL string
	srv *http.Server

	mu      sync.Mutex
	arrived map[string]time.Duration // id → latency
	want    map[string]bool
	done    chan struct{}
	dups    int
	// minBody and maxBody bound the sizes of the bodies of the first
	// deliveries of the ids wanted; minBody is -1 before the first.
	minBody, maxBody int
}

// NewReceiver listens on a loopback port.
func NewReceiver() (*Receiver, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := &Receiver{URL: "http://" + l.Addr().String()}
	r.srv = &http.Server{Handler: r, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = r.srv.Serve(l) }()
	r.Expect(nil)
	return r, nil
}

func (r *Receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	now := time.Now()
	b, _ := io.ReadAll(req.Body)
	w.WriteHeader(http.StatusNoContent)
	var m body
	if json.Unmarshal(b, &m) != nil || m.Data.After.ID == "" {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.arrived[m.Data.After.ID]; ok {
		r.dups++
		return
	}
	if !r.want[m.Data.After.ID] {
		return
	}
	r.arrived[m.Data.After.ID] = now.Sub(time.Unix(0, m.Data.After.T))
	if r.minBody < 0 || len(b) < r.minBody {
		r.minBody = len(b)
	}
	r.maxBody = max(r.maxBody, len(b))
	if len(r.arrived) == len(r.want) {
		close(r.done)
	}
}

// Expect resets the receiver for a new run expecting ids.
func (r *Receiver) Expect(ids []string) <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.arrived = map[string]time.Duration{}
	r.want = make(map[string]bool, len(ids))
	for _, id := range ids {
		r.want[id] = true
	}
	r.done = make(chan struct{})
	r.dups = 0
	r.minBody, r.maxBody = -1, 0
	if len(ids) == 0 {
		close(r.done)
	}
	return r.done
}

// Latencies returns the latencies recorded since Expect, the number
// delivered and the duplicates seen.
func (r *Receiver) Latencies() (lat []time.Duration, delivered, dups int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, d := range r.arrived {
		lat = append(lat, d)
	}
	return lat, len(r.arrived), r.dups
}

// Close stops the server.
func (r *Receiver) Close() error { return r.srv.Close() }

// BodySizes returns the smallest and the largest body of the deliveries
// recorded since Expect, in bytes; -1 and 0 before the first.
func (r *Receiver) BodySizes() (smallest, largest int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.minBody, r.maxBody
}
