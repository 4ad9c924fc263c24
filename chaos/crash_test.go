package chaos_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
)

// crashIngest is the ingest section of TestIngestCrashKeepsOrder: the
// defaults, under which JetStream alone would fail over only after the
// 30s pinnedTTL, so the standby must take over to deliver in time.
const crashIngest = "{sharing: pinned, drainTimeout: 1s, shutdownTimeout: 2s}"

// crashIngestNoTakeover is the ingest section of
// TestIngestCrashKeepsOrderWithoutTakeover: takeovers off and short
// timings, with pinnedTTL at twice ackWait, the least that ingest/config.go
// says keeps a key's order across a crash. pinnedTTL must exceed
// shutdownTimeout, hence the short drain and shutdown.
const crashIngestNoTakeover = "{sharing: pinned, ackWait: 2s, pinnedTTL: 4s, drainTimeout: 1s, shutdownTimeout: 2s, takeoverMaxReplay: -1}"

// TestIngestCrashKeepsOrder checks that a crash of the pinned ingest
// replica keeps each key's order when the standby takes over: it proves
// the holder dead, resets the consumer to its ack floor and takes the pin,
// so the dead replica's unacked tasks come again in stream order before
// any newer one (ingest/doc.go).
func TestIngestCrashKeepsOrder(t *testing.T) {
	runIngestCrash(t, crashIngest, true)
}

// TestIngestCrashKeepsOrderWithoutTakeover checks JetStream's own
// failover, which applies when no takeover happens: with ingest.pinnedTTL
// of at least twice ingest.ackWait the crashed replica's unacked tasks come
// due for redelivery before the pin passes to the standby, and JetStream
// serves redeliveries before newer messages.
//
// Two ingest processes share the consumer (pinned), one worker. With
// Temporal stopped the pinned replica receives a batch of changes it
// cannot hand off; it is then SIGKILLed (no NAK, no unpin), a second batch
// of changes to the same keys is written and Temporal comes back. Every
// change must be delivered, each key's first deliveries in commit order,
// duplicates only under the original webhook-id, with no dead letters and
// no stuck workflow.
//
// Two things make it hold. The pin moves only after every held task came
// due, and JetStream serves redeliveries before newer messages, so no held
// task is overtaken by a newer one. But while the dead replica still holds
// the pin nats-server (2.15.2, consumer.go loopAndGatherMsgs) rotates its
// redelivery queue, moving the head to the tail on every wake-up of the
// delivery loop that finds only unpinned pull requests, so the held tasks
// arrive out of order among themselves; ingest gathers such a burst of
// redeliveries and hands it off sorted by stream sequence
// (ingest.Config.RedeliveryWindow). Without that, every run of this test
// reordered 22–41 held changes.
func TestIngestCrashKeepsOrderWithoutTakeover(t *testing.T) {
	runIngestCrash(t, crashIngestNoTakeover, false)
}

func runIngestCrash(t *testing.T, ingestCfg string, takeover bool) {
	const (
		keys   = 20
		warmup = 100 // delivered before the crash; shows which replica is pinned
		held   = 100 // written with Temporal down: the pinned replica holds them when it dies
		after  = 100 // written after the crash
		settle = 3 * time.Minute
	)
	st := startStack(t, stackConfig{ingests: 2, workers: 1, ingest: ingestCfg})
	events := watchConsumerAdvisories(t, st.natsURL)
	var writes []write
	put := func(n int) { writes = append(writes, st.put(t, keys, n)...) }
	consumed := func(s service) float64 { return st.metric(t, s, "triggerflow_ingest_consumed_total", nil) }
	redelivered := func(s service) float64 { return st.metric(t, s, "triggerflow_ingest_redelivered_total", nil) }

	put(warmup)
	require.True(t, st.rcv.awaitDistinct(len(writes), settle), "warm-up: %d of %d changes delivered", st.rcv.distinct(), len(writes))
	in := [2]float64{consumed(st.ingests[0]), consumed(st.ingests[1])}
	require.True(t, (in[0] > 0) != (in[1] > 0), "with sharing: pinned exactly one ingest replica receives; consumed %v", in)
	active, standby := st.ingests[0], st.ingests[1]
	if in[1] > 0 {
		active, standby = st.ingests[1], st.ingests[0]
	}

	// The pinned replica receives every task of the next batch and holds
	// them all: Temporal is down, so it retries in place and keeps their
	// ack timers alive.
	before := consumed(active)
	require.NoError(t, st.temporal.Stop())
	put(held)
	awaitCount(t, fmt.Sprintf("%s holding %d tasks", active.name, held), before+held, func() float64 { return consumed(active) })

	crash := time.Now()
	require.NotNil(t, active.stop(syscall.SIGKILL), "%s was not running", active.name)
	put(after)
	t.Logf("ingest crash: the %d changes after the kill were committed between %s and %s after it", after,
		writes[len(writes)-after].at.Sub(crash).Round(time.Millisecond), writes[len(writes)-1].at.Sub(crash).Round(time.Millisecond))
	st.temporal.Restart(t)
	require.True(t, st.rcv.awaitDistinct(len(writes), settle), "%d of %d changes delivered", st.rcv.distinct(), len(writes))

	t.Logf("ingest crash: %s killed holding %d tasks; %s then received %.0f tasks, %.0f of them redelivered",
		active.name, held, standby.name, consumed(standby), redelivered(standby))
	t.Logf("ingest crash: consumer advisories (time since the kill):\n%s", events.since(crash))
	logLateDeliveries(t, st.rcv, writes, map[string][2]int{
		"warm-up": {0, warmup}, "held by the killed replica": {warmup, warmup + held}, "written after the kill": {warmup + held, len(writes)},
	})

	requireDeliveredInOrder(t, st.rcv, writes)
	taken := st.metric(t, standby, "triggerflow_ingest_takeovers_total", prometheus.Labels{"outcome": "taken"})
	if takeover {
		require.Equal(t, 1.0, taken, "the standby took over from the killed replica")
		require.GreaterOrEqual(t, consumed(standby), float64(held+after), "the tasks the killed replica held come again to the standby")
	} else {
		require.Zero(t, taken)
		require.GreaterOrEqual(t, redelivered(standby), float64(held), "the tasks the killed replica held come back to the standby")
	}
	awaitNoStuckWorkflows(t, st.tc)
	require.Zero(t, deadLetters(t, st.natsURL), "dead-letter stream must be empty")
	for _, s := range []service{standby, st.workers[0], st.watcher} {
		require.False(t, s.exited(), "%s exited on its own", s.name)
	}
}

// logLateDeliveries explains a broken order before the assertion fails:
// for every first delivery that came after a higher seq of its key, which
// phases (index ranges of writes) the late change and the one that
// overtook it were written in.
func logLateDeliveries(t *testing.T, rcv *receiver, writes []write, phases map[string][2]int) {
	t.Helper()
	phaseOf, index := map[ks]string{}, map[ks]int{}
	for i, w := range writes {
		index[ks{w.key, w.seq}] = i
	}
	for name, r := range phases {
		for _, w := range writes[r[0]:r[1]] {
			phaseOf[ks{w.key, w.seq}] = name
		}
	}
	acc, _, _, _ := rcv.snapshot()
	seen := map[ks]bool{}
	maxSeq := map[string]int{}
	count := map[string]int{}
	var lines []string
	for _, d := range acc {
		k := ks{d.key, d.seq}
		if seen[k] {
			continue
		}
		seen[k] = true
		if m, ok := maxSeq[d.key]; ok && d.seq < m {
			pair := fmt.Sprintf("%s, overtaken by one %s", phaseOf[k], phaseOf[ks{d.key, m}])
			count[pair]++
			lines = append(lines, fmt.Sprintf("  %s/%d (write #%d) after %d (#%d): %s", d.key, d.seq, index[k], m, index[ks{d.key, m}], pair))
		}
		maxSeq[d.key] = max(maxSeq[d.key], d.seq)
	}
	if len(lines) == 0 {
		return
	}
	var sum []string
	for pair, n := range count {
		sum = append(sum, fmt.Sprintf("  %d late: %s", n, pair))
	}
	t.Logf("ingest crash: %d late first deliveries\n%s\n%s", len(lines), strings.Join(sum, "\n"), strings.Join(lines, "\n"))
}

// consumerAdvisories records JetStream's advisories about the ingest
// consumer (pinned, unpinned, ...) as they arrive, to show when the pin
// moved. Listening to advisories changes nothing in delivery.
type consumerAdvisories struct {
	mu     sync.Mutex
	events []string
	at     []time.Time
}

func watchConsumerAdvisories(t *testing.T, url string) *consumerAdvisories {
	t.Helper()
	nc, err := nats.Connect(url)
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	a := &consumerAdvisories{}
	_, err = nc.Subscribe("$JS.EVENT.ADVISORY.CONSUMER.*.TRIGGERS.triggerflow-ingest", func(m *nats.Msg) {
		var ev struct {
			Reason string `json:"reason"`
		}
		_ = json.Unmarshal(m.Data, &ev)
		kind := m.Subject[len("$JS.EVENT.ADVISORY.CONSUMER."):strings.Index(m.Subject, ".TRIGGERS.")]
		if ev.Reason != "" {
			kind += " (" + ev.Reason + ")"
		}
		a.mu.Lock()
		defer a.mu.Unlock()
		a.events, a.at = append(a.events, kind), append(a.at, time.Now())
	})
	require.NoError(t, err)
	require.NoError(t, nc.Flush())
	return a
}

// since lists the advisories from t0 on, each with its offset from t0.
func (a *consumerAdvisories) since(t0 time.Time) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var b strings.Builder
	for i, at := range a.at {
		if !at.Before(t0) {
			fmt.Fprintf(&b, "  %8s %s\n", at.Sub(t0).Round(time.Millisecond), a.events[i])
		}
	}
	if b.Len() == 0 {
		return "  (none)"
	}
	return b.String()
}
