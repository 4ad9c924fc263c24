package chaos_test

import (
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/triggerflow/triggerflow/internal/testenv"
)

// TestScaleOut runs the scaled-out configuration docs/operations.md
// recommends, each service its own OS process: one watcher, two ingest
// replicas sharing the durable consumer with ingest.sharing: pinned (the
// default; nothing else is tuned), and two workers on one task queue, all
// against one nats-server and one Temporal dev server. It checks:
//
//   - every change is delivered and each key's changes arrive in commit
//     order (first deliveries by the seq in the payload), duplicates only
//     under the original's webhook-id;
//   - one ingest replica receives at a time, and both workers deliver;
//   - a graceful stop (SIGTERM) of the receiving ingest replica exits
//     cleanly and the standby carries on in order: once under load (phase
//     2), and once while the stopped replica holds tasks it cannot hand off
//     because Temporal is down, so it must hand every one back (phase 3).
//
// It asserts no speed: BenchmarkScaleOut measures throughput.
func TestScaleOut(t *testing.T) {
	const (
		keys = 20
		// Changes per phase; phases 2 and 3 write part a before the stop
		// of the receiving ingest replica and part b once it has exited.
		phase1           = 300
		phase2a, phase2b = 100, 100
		phase3a, phase3b = 100, 100
		settle           = 3 * time.Minute
	)
	st := startStack(t, stackConfig{ingests: 2, workers: 2, ingest: "{sharing: pinned}"})
	ingests, workers, ts, rcv := st.ingests, st.workers, st.temporal, st.rcv
	var writes []write
	put := func(n int) { writes = append(writes, st.put(t, keys, n)...) }
	consumed := func(s service) float64 { return st.metric(t, s, "triggerflow_ingest_consumed_total", nil) }
	redelivered := func(s service) float64 { return st.metric(t, s, "triggerflow_ingest_redelivered_total", nil) }
	succeeded := func(s service) float64 {
		return st.metric(t, s, "triggerflow_webhook_attempts_total", prometheus.Labels{"outcome": "success"})
	}

	// Phase 1: every replica up.
	begin := time.Now()
	put(phase1)
	require.True(t, rcv.awaitDistinct(len(writes), settle), "phase 1: %d of %d changes delivered", rcv.distinct(), len(writes))
	took := time.Since(begin)
	t.Logf("scale-out: phase 1, %d changes over %d keys delivered in %s (%.0f/s; not asserted)",
		phase1, keys, took.Round(time.Millisecond), float64(phase1)/took.Seconds())

	// Pinned: exactly one replica received tasks, the other stood by.
	in := [2]float64{consumed(ingests[0]), consumed(ingests[1])}
	t.Logf("scale-out: ingest consumed %v after phase 1", in)
	require.True(t, (in[0] > 0) != (in[1] > 0), "with sharing: pinned exactly one ingest replica receives; consumed %v", in)
	active, standby := ingests[0], ingests[1]
	if in[1] > 0 {
		active, standby = ingests[1], ingests[0]
	}

	// Phase 2: a graceful stop of the receiving replica while its tasks
	// are on their way; the second part is written once it has exited,
	// so only the standby can hand it off.
	put(phase2a)
	require.True(t, rcv.awaitDistinct(phase1+1, settle), "phase 2 never started delivering")
	stopGracefully(t, active.proc)
	put(phase2b)
	require.True(t, rcv.awaitDistinct(len(writes), settle), "phase 2: %d of %d changes delivered", rcv.distinct(), len(writes))
	n := consumed(standby)
	t.Logf("scale-out: phase 2, after %s stopped %s consumed %.0f tasks (phase 2b alone had %d)", active.name, standby.name, n, phase2b)
	require.GreaterOrEqual(t, n, float64(phase2b), "the standby took over")

	// Phase 3: the receiving replica is stopped while it holds tasks it
	// cannot hand off, because Temporal is down: it hands every one back
	// (NAK), and the standby must hand them off before the newer tasks of
	// the same keys written after the stop. The stopped replica comes
	// back first, as the new standby.
	active, standby = standby, active
	standby.start()
	awaitReady(t, st.hc, standby.proc, standby.ops)
	before := consumed(active)
	require.NoError(t, ts.Stop())
	put(phase3a)
	awaitCount(t, fmt.Sprintf("%s holding phase 3a", active.name), before+phase3a, func() float64 { return consumed(active) })
	stopGracefully(t, active.proc)
	put(phase3b)
	ts.Restart(t)
	require.True(t, rcv.awaitDistinct(len(writes), settle), "phase 3: %d of %d changes delivered", rcv.distinct(), len(writes))
	red := redelivered(standby)
	t.Logf("scale-out: phase 3, %s received %.0f redelivered tasks; %s held the %d of phase 3a", standby.name, red, active.name, phase3a)
	require.GreaterOrEqual(t, red, float64(phase3a), "the tasks the stopped replica held come back to the standby")

	requireDeliveredInOrder(t, rcv, writes)

	// Both workers delivered. Every 200 the receiver gave is a successful
	// attempt at one of them; wait until their counters show all of it.
	var ok [2]float64
	awaitCount(t, "successful attempts of all changes", float64(len(writes)), func() float64 {
		ok = [2]float64{succeeded(workers[0]), succeeded(workers[1])}
		return ok[0] + ok[1]
	})
	t.Logf("scale-out: successful webhook attempts per worker %v", ok)
	require.Positive(t, ok[0], "worker-0 delivered nothing")
	require.Positive(t, ok[1], "worker-1 delivered nothing")

	awaitNoStuckWorkflows(t, st.tc)
	require.Zero(t, deadLetters(t, st.natsURL), "dead-letter stream must be empty")
	for _, s := range []service{standby, workers[0], workers[1], st.watcher} {
		require.False(t, s.exited(), "%s exited on its own", s.name)
	}
}

// requireDeliveredInOrder checks that every write was delivered, nothing
// else was, every key's first deliveries came in seq order, and a
// duplicate carried its original's webhook-id.
func requireDeliveredInOrder(t *testing.T, rcv *receiver, writes []write) {
	t.Helper()
	acc, _, _, bad := rcv.snapshot()
	idOf := map[ks]string{}
	maxSeq := map[string]int{}
	var late, wrongID []string
	dups := 0
	for _, d := range acc {
		k := ks{d.key, d.seq}
		if id, seen := idOf[k]; seen {
			dups++
			if id != d.webhookID {
				wrongID = append(wrongID, fmt.Sprintf("%s/%d: %s then %s", d.key, d.seq, id, d.webhookID))
			}
			continue
		}
		idOf[k] = d.webhookID
		if m, ok := maxSeq[d.key]; ok && d.seq < m {
			late = append(late, fmt.Sprintf("%s/%d after %d", d.key, d.seq, m))
		}
		maxSeq[d.key] = max(maxSeq[d.key], d.seq)
	}
	lost, unexpected := reconcile(writes, idOf)
	t.Logf("scale-out: %d changes, %d deliveries, %d duplicates", len(writes), len(acc), dups)
	require.Empty(t, lost, "changes never delivered")
	require.Empty(t, unexpected, "deliveries of changes never written")
	require.Empty(t, bad, "deliveries the receiver could not parse")
	require.Empty(t, wrongID, "a duplicate must carry the original's webhook-id")
	require.Empty(t, late, "per-key order broken")
}

// stopGracefully sends SIGTERM and requires the process to exit cleanly:
// ingest exits non-zero when its shutdown timed out, which would leave the
// tasks it held to be redelivered after ackWait, out of order.
func stopGracefully(t *testing.T, p *proc) {
	t.Helper()
	st := p.stop(syscall.SIGTERM)
	require.NotNil(t, st, "%s was not running", p.name)
	require.True(t, st.Success(), "%s: a graceful stop must exit cleanly, got %v", p.name, st)
}

// BenchmarkScaleOut measures deliveries per second end to end, from the
// first write of a batch to the last of its first deliveries, as worker
// replicas are added: one ingest replica (pinned; more would only stand
// by), 50 hot keys, a receiver that takes 100 ms per request. In the
// capped rows every worker may hold only 2 connections to the receiver
// (worker.maxConnsPerHost), so one worker delivers at most 20 per second
// and workers are the bottleneck until together they outrun Temporal; the
// uncapped rows use the default (64 per worker) and show Temporal's
// ceiling on the machine.
//
//	go test ./chaos -run '^$' -bench ScaleOut -benchtime 1x
func BenchmarkScaleOut(b *testing.B) {
	const keys, warm, batch = 50, 200, 400
	for _, bc := range []struct {
		name    string
		workers int
		worker  string
	}{
		{"capped/workers=1", 1, "maxConnsPerHost: 2"},
		{"capped/workers=2", 2, "maxConnsPerHost: 2"},
		{"capped/workers=4", 4, "maxConnsPerHost: 2"},
		{"capped/workers=8", 8, "maxConnsPerHost: 2"},
		{"uncapped/workers=1", 1, ""},
		{"uncapped/workers=2", 2, ""},
	} {
		b.Run(bc.name, func(b *testing.B) {
			st := startStack(b, stackConfig{ingests: 1, workers: bc.workers, ingest: "{sharing: pinned}", worker: bc.worker})
			st.rcv.setLatency(100 * time.Millisecond)
			// Warm-up: every key's workflow runs before the clock starts.
			st.put(b, keys, warm)
			require.True(b, st.rcv.awaitDistinct(warm, 5*time.Minute), "warm-up not delivered")
			total := warm
			for b.Loop() {
				st.put(b, keys, batch)
				total += batch
				require.True(b, st.rcv.awaitDistinct(total, 10*time.Minute), "%d of %d delivered", st.rcv.distinct(), total)
			}
			b.ReportMetric(float64(total-warm)/b.Elapsed().Seconds(), "deliveries/s")
			var per []float64
			for _, w := range st.workers {
				per = append(per, st.metric(b, w, "triggerflow_webhook_attempts_total", prometheus.Labels{"outcome": "success"}))
			}
			b.Logf("successful attempts per worker (warm-up included): %v", per)
		})
	}
}

// TestRetriesOnAnotherWorker checks that a webhook attempt a worker made is
// retried by another worker once that worker is gone: with the receiver
// answering 500s, both workers fail attempts; worker-0 is then SIGKILLed
// and stays down, the receiver recovers, and every change must still be
// delivered, in order. Every successful attempt is then worker-1's, so the
// changes worker-0 had attempted were retried there.
func TestRetriesOnAnotherWorker(t *testing.T) {
	const keys, changes = 10, 60
	st := startStack(t, stackConfig{ingests: 1, workers: 2, ingest: "{sharing: pinned}",
		worker: "retry: {maxAttempts: 1000, initialBackoff: 200ms, maxBackoff: 1s, multiplier: 2}"})
	attempts := func(s service) float64 { return st.metric(t, s, "triggerflow_webhook_attempts_total", nil) }
	succeeded := func(s service) float64 {
		return st.metric(t, s, "triggerflow_webhook_attempts_total", prometheus.Labels{"outcome": "success"})
	}
	w0, w1 := st.workers[0], st.workers[1]

	st.rcv.setMode(modeFail)
	writes := st.put(t, keys, changes)
	testenv.Eventually(t, time.Minute, "failed attempts at both workers", func() error {
		if a0, a1 := attempts(w0), attempts(w1); a0 == 0 || a1 == 0 {
			return fmt.Errorf("worker-0 made %.0f, worker-1 %.0f", a0, a1)
		}
		return nil
	})
	failedAtW0 := attempts(w0)
	require.NotNil(t, w0.stop(syscall.SIGKILL), "worker-0 was not running")
	st.rcv.setMode(modeOK)

	require.True(t, st.rcv.awaitDistinct(changes, 3*time.Minute), "%d of %d changes delivered", st.rcv.distinct(), changes)
	requireDeliveredInOrder(t, st.rcv, writes)
	awaitCount(t, "worker-1 to count every success", changes, func() float64 { return succeeded(w1) })
	t.Logf("worker-0 failed %.0f attempts before it was killed; worker-1 then made %.0f successful attempts", failedAtW0, succeeded(w1))
	require.Zero(t, deadLetters(t, st.natsURL), "dead-letter stream must be empty")
	require.False(t, w1.exited(), "worker-1 exited on its own")
}
