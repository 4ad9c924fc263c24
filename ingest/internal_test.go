package ingest

import (
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.temporal.io/api/serviceerror"

	"github.com/triggerflow/triggerflow/streams"
	"github.com/triggerflow/triggerflow/trigger"
)

func TestCollisionCache(t *testing.T) {
	t.Parallel()
	c := newCollisionCache(2)
	require.False(t, c.observe("S.t.c.h1", "a"))
	require.False(t, c.observe("S.t.c.h1", "a"), "same key again is no collision")
	require.True(t, c.observe("S.t.c.h1", "b"))
	require.True(t, c.observe("S.t.c.h1", "b"), "the first key keeps the subject")
	require.False(t, c.observe("S.t.c.h1", "a"))

	require.False(t, c.observe("S.t.c.h2", "x"))
	require.False(t, c.observe("S.t.c.h3", "y")) // evicts h1, the least recently seen
	require.False(t, c.observe("S.t.c.h1", "b"), "an evicted subject is forgotten")
	require.Len(t, c.bySub, 2)
}

func TestLaneOrderAndRetire(t *testing.T) {
	t.Parallel()
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "depth"})
	l := newLane(g)
	items := []*item{{streamSeq: 1}, {streamSeq: 2}, {streamSeq: 3}}
	for _, it := range items {
		require.True(t, l.push(it))
	}
	abort := make(chan struct{})
	batch, ok := l.next(abort, one)
	require.True(t, ok)
	require.Equal(t, []*item{items[0]}, batch)

	now := time.Now()
	for _, it := range items {
		it.touched = now.Add(-time.Minute)
	}
	stale := l.stale(now, time.Second)
	require.Len(t, stale, 3, "the current batch and the queued items")
	require.Empty(t, l.stale(now, time.Second), "just touched")

	l.done()
	l.close()
	rest := l.retire()
	require.Equal(t, []*item{items[1], items[2]}, rest)
	require.False(t, l.push(&item{}), "a retired lane refuses items")
	_, ok = l.next(abort, one)
	require.False(t, ok)
}

var one = batchLimit{items: 1, bytes: 1}

func TestLaneBatchesOneKeyInOrder(t *testing.T) {
	t.Parallel()
	l := newLane(prometheus.NewGauge(prometheus.GaugeOpts{Name: "depth"}))
	// Keys a, b, a, a, c, a, b: the batch is the head's key in queue order,
	// the others keep their places.
	for i, k := range []string{"a", "b", "a", "a", "c", "a", "b"} {
		require.True(t, l.push(&item{streamSeq: uint64(i + 1), key: k}))
	}
	seqs := func(b []*item) (out []uint64) {
		for _, it := range b {
			out = append(out, it.streamSeq)
		}
		return out
	}
	abort := make(chan struct{})
	lim := batchLimit{items: 3, bytes: 1 << 20}
	batch, ok := l.next(abort, lim)
	require.True(t, ok)
	require.Equal(t, []uint64{1, 3, 4}, seqs(batch), "at most three")
	l.done()
	batch, _ = l.next(abort, lim)
	require.Equal(t, []uint64{2, 7}, seqs(batch))
	l.done()
	batch, _ = l.next(abort, lim)
	require.Equal(t, []uint64{5}, seqs(batch))
	l.done()
	batch, _ = l.next(abort, lim)
	require.Equal(t, []uint64{6}, seqs(batch))
	l.done()
	l.close()
	require.Empty(t, l.retire())

	// A same-key item too big for the batch ends it for that key: a later,
	// smaller one must not overtake it.
	l = newLane(prometheus.NewGauge(prometheus.GaugeOpts{Name: "depth"}))
	for i, n := range []int{10, 10, 500, 10, 10} {
		require.True(t, l.push(&item{streamSeq: uint64(i + 1), key: "a", msg: sizedMsg(n)}))
	}
	small := batchLimit{items: 10, bytes: 100}
	batch, _ = l.next(abort, small)
	require.Equal(t, []uint64{1, 2}, seqs(batch))
	l.done()
	batch, _ = l.next(abort, small)
	require.Equal(t, []uint64{3}, seqs(batch), "the big one goes alone, as the head")
	l.done()
	batch, _ = l.next(abort, small)
	require.Equal(t, []uint64{4, 5}, seqs(batch))
	l.done()

	// An item without a key (not handed off) is never batched.
	l = newLane(prometheus.NewGauge(prometheus.GaugeOpts{Name: "depth"}))
	l.push(&item{streamSeq: 1})
	l.push(&item{streamSeq: 2})
	batch, _ = l.next(abort, lim)
	require.Equal(t, []uint64{1}, seqs(batch))
}

func TestLaneNextWaitsAndAborts(t *testing.T) {
	t.Parallel()
	l := newLane(prometheus.NewGauge(prometheus.GaugeOpts{Name: "depth"}))
	got := make(chan *item)
	go func() {
		batch, _ := l.next(make(chan struct{}), one)
		got <- batch[0]
	}()
	want := &item{streamSeq: 9}
	l.push(want)
	require.Same(t, want, <-got)

	abort := make(chan struct{})
	done := make(chan bool)
	go func() {
		_, ok := l.next(abort, one)
		done <- ok
	}()
	close(abort)
	require.False(t, <-done)
}

func TestPermanent(t *testing.T) {
	t.Parallel()
	require.True(t, permanent(serviceerror.NewInvalidArgument("Blob data size exceeds limit.")))
	require.False(t, permanent(serviceerror.NewInvalidArgument("exceeded workflow execution limit for signal events")))
	require.False(t, permanent(serviceerror.NewInvalidArgument("search attribute TenantId is not defined")))
	require.False(t, permanent(serviceerror.NewUnavailable("down")))
	require.False(t, permanent(serviceerror.NewResourceExhausted(0, "busy")))
	require.Equal(t, "Unavailable", errorCode(serviceerror.NewUnavailable("down")))
}

func testTask(docKey string) *trigger.DeliveryTask {
	return &trigger.DeliveryTask{V: trigger.TaskVersion, EventID: "evt_1", Tenant: "acme", TriggerID: "t1",
		Collection: "orders/eu", DocKey: docKey, Type: trigger.EventType("create"), Position: "1",
		CommitTime: time.Unix(1, 0), URL: "http://example.com"}
}

func TestCheckSubject(t *testing.T) {
	t.Parallel()
	in := &Ingester{cfg: Config{Stream: "TRIGGERS"}}
	task := testTask("o-17")
	s, err := streams.BuildSubject("TRIGGERS", "acme", "orders/eu", "o-17")
	require.NoError(t, err)
	require.NoError(t, in.checkSubject(s.Name, task))
	require.ErrorContains(t, in.checkSubject("TRIGGERS.acme.orders.eu.bzE4", task), "builds")
	require.ErrorContains(t, in.checkSubject("TRIGGERS.other.orders.eu."+s.Name[len(s.Name)-6:], task), "builds")

	flagged := testTask("o-17")
	flagged.SubjectHashed = true
	require.ErrorContains(t, in.checkSubject(s.Name, flagged), "subjectHashed")

	long := testTask(strings.Repeat("k", 900))
	long.SubjectHashed = true
	hs, err := streams.BuildSubject("TRIGGERS", "acme", "orders/eu", long.DocKey)
	require.NoError(t, err)
	require.True(t, hs.Hashed)
	require.NoError(t, in.checkSubject(hs.Name, long))

	in.hashToken = func(string) string { return "short" }
	require.NoError(t, in.checkSubject("TRIGGERS.acme.orders.eu.short", long))
	require.Error(t, in.checkSubject(hs.Name, long))
}

func TestLaneOf(t *testing.T) {
	t.Parallel()
	in := &Ingester{lanes: make([]*lane, 16)}
	msg := func(subject string) jetstream.Msg { return fakeMsg{subject: subject} }
	a := &item{msg: msg("S.acme.orders.eu.bzE3"), task: testTask("o17")}
	b := &item{msg: msg("S.acme.orders.eu.bzE3"), task: testTask("o17")}
	require.Equal(t, in.laneOf(a), in.laneOf(b))

	// Hashed subjects pick their lane by token: colliding keys share it.
	spread := map[int]bool{}
	for i := range 64 {
		h := &item{msg: msg("S.acme.orders.eu.tok"), task: testTask(strings.Repeat("k", 900+i))}
		h.task.SubjectHashed = true
		spread[in.laneOf(h)] = true
	}
	require.Len(t, spread, 1)

	spread = map[int]bool{}
	for i := range 64 {
		spread[in.laneOf(&item{msg: msg("x"), task: testTask(strings.Repeat("k", i+1))})] = true
	}
	require.Greater(t, len(spread), 8, "keys spread over lanes")
}

type fakeMsg struct {
	jetstream.Msg
	subject string
}

func (m fakeMsg) Subject() string { return m.subject }

// sizedMsg is a message with an n-byte payload.
func sizedMsg(n int) jetstream.Msg { return dataMsg{data: make([]byte, n)} }

type dataMsg struct {
	jetstream.Msg
	data []byte
}

func (m dataMsg) Data() []byte { return m.data }

func TestConsumerConfig(t *testing.T) {
	t.Parallel()
	cfg := Config{}.WithDefaults()
	cc := ConsumerConfig(cfg)
	require.Equal(t, "TRIGGERS.>", cc.FilterSubject)
	require.Equal(t, jetstream.AckExplicitPolicy, cc.AckPolicy)
	require.Equal(t, 15*time.Second, cc.AckWait)
	require.Equal(t, []time.Duration{15 * time.Second, 30 * time.Second, time.Minute}, cc.BackOff)
	require.Equal(t, -1, cc.MaxDeliver)
	require.Equal(t, 1024, cc.MaxAckPending)
	require.Equal(t, jetstream.PriorityPolicyPinned, cc.PriorityPolicy)
	require.Equal(t, 30*time.Second, cc.PinnedTTL, "at least twice AckWait, so a crashed replica's tasks come due before the pin moves")
	require.Equal(t, 10*time.Second, cfg.pullExpiry())
	require.True(t, cfg.crashKeepsOrder())

	cfg.MaxDeliver = 1
	cfg.Sharing = SharingShared
	cc = ConsumerConfig(cfg)
	require.Equal(t, 2, cc.MaxDeliver, "one extra delivery to dead-letter on")
	require.Len(t, cc.BackOff, 2, "no more backoff steps than deliveries")
	require.Equal(t, jetstream.PriorityPolicyNone, cc.PriorityPolicy)
	require.Empty(t, cc.PriorityGroups)

	have := cc
	have.AckWait = time.Second
	have.FilterSubjects, have.FilterSubject = []string{"TRIGGERS.acme.>"}, ""
	diffs := ConsumerDiff(cc, have)
	require.Len(t, diffs, 2, diffs)
	require.Contains(t, strings.Join(diffs, "\n"), "ack wait is 1s, want 15s")
	require.Empty(t, ConsumerDiff(cc, cc))
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	require.NoError(t, Config{}.WithDefaults().Validate())
	cfg := Config{Sharing: "round-robin", PinnedTTL: time.Second, RetryInitial: time.Minute}.WithDefaults()
	err := cfg.Validate()
	require.ErrorIs(t, err, ErrInvalidConfig)
	require.ErrorContains(t, err, `sharing "round-robin"`)
	require.ErrorContains(t, err, "retryMax")

	cfg = Config{Sharing: SharingPinned, PinnedTTL: 10 * time.Second}.WithDefaults()
	require.ErrorContains(t, cfg.Validate(), "pinnedTTL 10s must be at least 3s and exceed shutdownTimeout (10s)")
	cfg.Lanes = -1
	require.ErrorContains(t, cfg.Validate(), "lanes -1 must be at least 1")
}

func TestSummary(t *testing.T) {
	t.Parallel()
	require.Equal(t, "acme · orders/eu/o-17 · t1", summary(testTask("o-17")))
	s := summary(testTask(strings.Repeat("ü", 300)))
	require.LessOrEqual(t, len(s), maxSummaryBytes)
	require.True(t, strings.HasSuffix(s, "…"))
}

func TestRecentKeys(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	r := newRecentKeys(time.Minute, 3)
	require.False(t, r.touch("a", t0), "first hand-off")
	require.True(t, r.touch("a", t0.Add(59*time.Second)))
	require.True(t, r.touch("a", t0.Add(110*time.Second)), "known for at least the window after the last hand-off")
	require.False(t, r.touch("a", t0.Add(4*time.Minute)), "forgotten twice the window after the last hand-off")

	// A full generation retires early: memory stays bounded.
	r = newRecentKeys(time.Hour, 2)
	for _, k := range []string{"a", "b", "c", "d", "e"} {
		require.False(t, r.touch(k, t0))
	}
	require.LessOrEqual(t, len(r.cur)+len(r.prev), 4)
	require.True(t, r.touch("e", t0))
	require.False(t, r.touch("a", t0), "an early retirement forgets the oldest keys")
}
