package bench

import (
	"context"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// Phase names the two runs of a row; keys differ between them so each
// phase creates its own workflows.
type Phase string

const (
	// Closed writes all events as fast as the senders can and measures
	// until the last is delivered: throughput and history.
	Closed Phase = "c"
	// Open writes at a fixed rate (by default half the closed-loop capacity):
	// latency.
	Open Phase = "o"
)

// SweepPhases are the phases of the extra open loops at lower rates
// (Sizes.Sweep), in order; a scenario must accept them as it does Open.
var SweepPhases = []Phase{"s1", "s2", "s3"}

// Scenario is one row's system under test.
type Scenario struct {
	Name string
	// Key names event i's key in a phase.
	Key func(p Phase, i int) string
	// Send commits one event; m.T is set just before the call.
	Send func(ctx context.Context, p Phase, key string, m Mark) error
	// Senders is how many goroutines write in the closed loop.
	Senders int
	// History, when set, sums the history events, actions and bytes of
	// the workflows of the closed phase's keys (called after every event
	// is delivered).
	History func(ctx context.Context, keys []string) (Usage, error)
	// RSS reports peak RSS per process, MiB.
	RSS func() map[string]float64
	// CPU reports cumulative CPU seconds per process; the row records
	// each one's share over the closed loop.
	CPU func() map[string]float64
	// DuringClosed, when set, is called just before the closed loop's
	// first write (the bench starts CPU profiles there). The function it
	// returns is called before the open loop starts, or when the row ends
	// early, and must return once what DuringClosed started is done.
	DuringClosed func(ctx context.Context) (wait func())
	// MinBody, when positive, is the smallest webhook body the closed
	// loop's deliveries may have: a smaller one fails the row (the large
	// rows' bodies must carry both images). The row's notes then give
	// the bodies' sizes.
	MinBody int
	Notes   string
}

// Sizes are the event counts of one row.
type Sizes struct {
	Closed, Open int
	// OpenMax caps the open-loop run's duration.
	OpenMax time.Duration
	// OpenFraction is the open-loop rate as a fraction of the measured
	// closed-loop capacity (0.5 when zero).
	OpenFraction float64
	// Timeout bounds each phase's wait for deliveries.
	Timeout time.Duration
	// Sweep are further open-loop rates, as fractions of the closed-loop
	// capacity, each measured like the main open loop after it: where
	// latency meets its goal when half the capacity does not. At most
	// len(SweepPhases).
	Sweep []float64
}

// Measure runs a scenario's closed and open loops against rec.
func Measure(ctx context.Context, rec *Receiver, sc Scenario, sz Sizes) (row Row) {
	row = Row{Name: sc.Name, Events: sz.Closed, HistoryPerDelivery: -1, ActionsPerDelivery: -1, HistoryBytesPerDelivery: -1, Notes: sc.Notes}
	defer func() {
		if sc.RSS != nil {
			row.RSSMB = sc.RSS()
		}
		row.Load = Load1()
	}()

	keys := make([]string, sz.Closed)
	ids := make([]string, sz.Closed)
	for i := range keys {
		keys[i] = sc.Key(Closed, i)
		ids[i] = fmt.Sprintf("%s/c/%d", sc.Name, i)
	}
	done := rec.Expect(ids)
	var cpu0 map[string]float64
	if sc.CPU != nil {
		cpu0 = sc.CPU()
	}
	finishDuring := func() {}
	if sc.DuringClosed != nil {
		finishDuring = sync.OnceFunc(sc.DuringClosed(ctx))
		defer finishDuring()
	}
	start := time.Now()
	var next atomic.Int64
	errc := make(chan error, sc.Senders)
	var wg sync.WaitGroup
	for range max(sc.Senders, 1) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= sz.Closed {
					return
				}
				if err := sc.Send(ctx, Closed, keys[i], Mark{ID: ids[i], T: time.Now().UnixNano()}); err != nil {
					errc <- err
					return
				}
			}
		})
	}
	wg.Wait()
	select {
	case err := <-errc:
		row.Err = "closed loop send: " + err.Error()
		return row
	default:
	}
	if err := wait(ctx, done, sz.Timeout); err != nil {
		_, n, _ := rec.Latencies()
		row.Err = fmt.Sprintf("closed loop: %d of %d delivered: %v", n, sz.Closed, err)
		return row
	}
	elapsed := time.Since(start)
	if sc.CPU != nil {
		row.CPUPerDeliveryMs = map[string]float64{}
		for name, c := range sc.CPU() {
			row.CPUPerDeliveryMs[name] = round1((c - cpu0[name]) * 1000 / float64(sz.Closed))
		}
	}
	row.DeliveriesPerSec = round1(float64(sz.Closed) / elapsed.Seconds())
	if _, _, dups := rec.Latencies(); dups > 0 {
		row.Notes += fmt.Sprintf(" %d duplicate deliveries in the closed loop.", dups)
	}
	if sc.MinBody > 0 {
		smallest, largest := rec.BodySizes()
		row.Notes += fmt.Sprintf(" Webhook bodies of the closed loop: %d to %d bytes.", smallest, largest)
		if smallest < sc.MinBody {
			row.Err = fmt.Sprintf("closed loop: a webhook body of %d bytes, less than the %d the row's documents need", smallest, sc.MinBody)
			return row
		}
	}
	if sc.History != nil {
		h, err := sc.History(ctx, keys)
		if err != nil {
			row.Err = "history: " + err.Error()
		} else {
			row.HistoryPerDelivery = math.Round(float64(h.Events)/float64(sz.Closed)*100) / 100
			row.ActionsPerDelivery = math.Round(float64(h.Actions)/float64(sz.Closed)*100) / 100
			row.HistoryBytesPerDelivery = math.Round(float64(h.Bytes) / float64(sz.Closed))
		}
	}

	finishDuring()

	frac := sz.OpenFraction
	if frac <= 0 {
		frac = 0.5
	}
	capacity := float64(sz.Closed) / elapsed.Seconds()
	main := openLoop(ctx, rec, sc, Open, capacity*frac, sz)
	row.OpenLoopRate, row.OpenLoopEvents = main.Rate, main.Events
	row.P50ms, row.P95ms, row.P99ms = main.P50ms, main.P95ms, main.P99ms
	if main.Err != "" {
		row.Err = main.Err
		return row
	}
	for j, f := range sz.Sweep[:min(len(sz.Sweep), len(SweepPhases))] {
		pt := openLoop(ctx, rec, sc, SweepPhases[j], capacity*f, sz)
		pt.Fraction = f
		row.Sweep = append(row.Sweep, pt)
		if pt.Err != "" {
			row.Err = pt.Err
			return row
		}
	}
	return row
}

// OpenLoop is one fixed-rate run: commit → receiver latency percentiles.
type OpenLoop struct {
	Fraction float64 `json:"fraction,omitempty"`
	Rate     float64 `json:"rate"`
	Events   int     `json:"events"`
	P50ms    float64 `json:"p50ms"`
	P95ms    float64 `json:"p95ms"`
	P99ms    float64 `json:"p99ms"`
	Err      string  `json:"error,omitempty"`
}

// openLoop writes at rate for at most sz.Open events or sz.OpenMax, one
// goroutine per scheduled write, and waits for every delivery.
func openLoop(ctx context.Context, rec *Receiver, sc Scenario, ph Phase, rate float64, sz Sizes) OpenLoop {
	n := min(sz.Open, max(10, int(rate*sz.OpenMax.Seconds())))
	out := OpenLoop{Rate: round1(rate), Events: n}
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("%s/%s/%d", sc.Name, ph, i)
	}
	done := rec.Expect(ids)
	interval := time.Duration(float64(time.Second) / rate)
	start := time.Now()
	var sendErr atomic.Value
	var wg sync.WaitGroup
	for i := range n {
		if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
			time.Sleep(d) // the open loop's schedule, not synchronisation
		}
		wg.Go(func() {
			if err := sc.Send(ctx, ph, sc.Key(ph, i), Mark{ID: ids[i], T: time.Now().UnixNano()}); err != nil {
				sendErr.Store(err)
			}
		})
	}
	wg.Wait()
	if err, _ := sendErr.Load().(error); err != nil {
		out.Err = fmt.Sprintf("open loop %s send: %v", ph, err)
		return out
	}
	if err := wait(ctx, done, sz.Timeout); err != nil {
		_, got, _ := rec.Latencies()
		out.Err = fmt.Sprintf("open loop %s: %d of %d delivered: %v", ph, got, n, err)
	}
	lat, _, _ := rec.Latencies()
	out.P50ms, out.P95ms, out.P99ms = ms(Percentile(lat, 50)), ms(Percentile(lat, 95)), ms(Percentile(lat, 99))
	return out
}

func wait(ctx context.Context, done <-chan struct{}, timeout time.Duration) error {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-done:
		return nil
	case <-t.C:
		return fmt.Errorf("timed out after %s", timeout)
	case <-ctx.Done():
		return ctx.Err()
	}
}

func round1(f float64) float64 { return math.Round(f*10) / 10 }
