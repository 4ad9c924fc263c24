package bench

import (
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"
)

// SoakSample is the state of a soak run at one moment.
type SoakSample struct {
	Elapsed   time.Duration      `json:"elapsedNs"`
	Sent      int64              `json:"sent"`
	Delivered int                `json:"delivered"`
	RSSMB     map[string]float64 `json:"rssMB"`
}

// SoakResult is a long fixed-rate run: memory over time, and latency.
type SoakResult struct {
	Name     string        `json:"name"`
	Rate     float64       `json:"rate"`
	Duration time.Duration `json:"durationNs"`
	Events   int           `json:"events"`
	Samples  []SoakSample  `json:"samples"`
	P50ms    float64       `json:"p50ms"`
	P99ms    float64       `json:"p99ms"`
	Dups     int           `json:"duplicates"`
	Err      string        `json:"error,omitempty"`
}

// Soak writes at rate for d through sc (phase Open), sampling every
// process's current RSS every `every`, then waits for every delivery.
func Soak(ctx context.Context, rec *Receiver, sc Scenario, rss func() map[string]float64, rate float64, d, every, timeout time.Duration) SoakResult {
	n := int(rate * d.Seconds())
	res := SoakResult{Name: sc.Name, Rate: rate, Duration: d, Events: n}
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("%s/soak/%d", sc.Name, i)
	}
	done := rec.Expect(ids)
	var sent atomic.Int64
	sample := func(start time.Time) {
		_, delivered, _ := rec.Latencies()
		res.Samples = append(res.Samples, SoakSample{Elapsed: time.Since(start).Round(time.Second), Sent: sent.Load(), Delivered: delivered, RSSMB: rss()})
	}
	start := time.Now()
	sample(start)
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-stopSampling:
				return
			case <-t.C:
				sample(start)
			}
		}
	}()
	interval := time.Duration(float64(time.Second) / rate)
	var sendErr atomic.Value
	var wg sync.WaitGroup
	for i := range n {
		if ctx.Err() != nil {
			break
		}
		if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
			time.Sleep(d) // the open loop's schedule, not synchronisation
		}
		wg.Go(func() {
			if err := sc.Send(ctx, Open, sc.Key(Open, i), Mark{ID: ids[i], T: time.Now().UnixNano()}); err != nil {
				sendErr.Store(err)
			}
			sent.Add(1)
		})
	}
	wg.Wait()
	err := wait(ctx, done, timeout)
	close(stopSampling)
	<-sampled
	sample(start)
	if e, _ := sendErr.Load().(error); e != nil {
		res.Err = "send: " + e.Error()
	} else if err != nil {
		_, got, _ := rec.Latencies()
		res.Err = fmt.Sprintf("%d of %d delivered: %v", got, n, err)
	}
	lat, _, dups := rec.Latencies()
	res.P50ms, res.P99ms, res.Dups = ms(Percentile(lat, 50)), ms(Percentile(lat, 99)), dups
	return res
}

// WriteTable prints the samples, one line each.
func (r SoakResult) WriteTable(w io.Writer) error {
	fmt.Fprintf(w, "soak %s: %.1f/s for %s, %d events, p50 %.1f ms, p99 %.1f ms, %d duplicates%s\n",
		r.Name, r.Rate, r.Duration, r.Events, r.P50ms, r.P99ms, r.Dups, errSuffix(r.Err))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight|tabwriter.Debug)
	fmt.Fprintln(tw, "elapsed\tsent\tdelivered\tRSS MiB\t")
	for _, s := range r.Samples {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t\n", s.Elapsed, s.Sent, s.Delivered, formatRSS(s.RSSMB))
	}
	return tw.Flush()
}
