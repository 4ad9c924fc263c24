package ingest

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/triggerflow/triggerflow/streams"
	"github.com/triggerflow/triggerflow/trigger"
)

// item is one received message on its way through a lane.
type item struct {
	msg       jetstream.Msg
	received  time.Time
	touched   time.Time // last ack-timer reset; guarded by the lane's mu
	delivered uint64    // JetStream's delivery count
	streamSeq uint64
	task      *trigger.DeliveryTask // nil if the payload did not decode
	// key is the task's workflow ID, set once the task is known to be
	// handed off; the lane batches the queued tasks of one key.
	key    string
	labels labels
	// reason is set when the message is dead-lettered instead of handed
	// off; detail explains it.
	reason, detail string
	// acked is set by settle, on the lane's goroutine, so a batch cut
	// short by shutdown hands back only what is still unsettled.
	acked bool
}

func (it *item) payload() []byte {
	if it.msg == nil {
		return nil
	}
	return it.msg.Data()
}

// onMessage runs on the consumer's delivery goroutine, one message at a
// time in delivery order: it classifies the message and queues it on its
// lane without blocking, so a slow key never holds up the others.
func (in *Ingester) onMessage(msg jetstream.Msg) {
	now := time.Now()
	it := &item{msg: msg, received: now, touched: now, labels: invalidLabels}
	if md, err := msg.Metadata(); err == nil {
		it.delivered, it.streamSeq = md.NumDelivered, md.Sequence.Stream
	}
	if pin := msg.Headers().Get("Nats-Pin-Id"); pin != "" {
		in.learnPin(pin)
	}
	in.classify(it)
	in.note("received", it)
	in.m.consumed.WithLabelValues(it.labels.values()...).Inc()
	if it.delivered > 1 {
		in.m.redelivered.WithLabelValues(it.labels.values()...).Inc()
	}
	if it.reason == "" && in.cfg.MaxDeliver > 0 && it.delivered > uint64(in.cfg.MaxDeliver) {
		it.reason = ReasonMaxDeliver
		it.detail = fmt.Sprintf("delivered %d times, more than ingest.maxDeliver (%d)", it.delivered, in.cfg.MaxDeliver)
	}
	in.routeMu.Lock()
	defer in.routeMu.Unlock()
	if it.delivered > 1 && in.cfg.RedeliveryWindow > 0 {
		in.regather(it)
		return
	}
	in.flushRegatheredLocked()
	in.route(it)
}

// regather holds a redelivered message back until the burst it belongs to
// ends. JetStream serves redeliveries before new messages, but after a
// pinned replica dies it rotates its redelivery queue while the dead
// replica still holds the pin (each wake-up of its delivery loop moves the
// head to the tail), so the standby receives the dead replica's tasks
// ahead of newer ones yet out of order among themselves. Sorted by stream
// sequence they are back in each key's order. The burst ends with the
// first message delivered for the first time, or after RedeliveryWindow
// without a message.
func (in *Ingester) regather(it *item) {
	in.regathered = append(in.regathered, it)
	if in.regatherTimer == nil {
		in.regatherTimer = time.AfterFunc(in.cfg.RedeliveryWindow, in.flushRegathered)
	} else {
		in.regatherTimer.Reset(in.cfg.RedeliveryWindow)
	}
}

func (in *Ingester) flushRegathered() {
	in.routeMu.Lock()
	defer in.routeMu.Unlock()
	in.flushRegatheredLocked()
}

// flushRegatheredLocked routes the gathered redeliveries in stream order;
// routeMu must be held.
func (in *Ingester) flushRegatheredLocked() {
	if len(in.regathered) == 0 {
		return
	}
	if in.regatherTimer != nil {
		in.regatherTimer.Stop()
	}
	held := in.regathered
	in.regathered = nil
	slices.SortStableFunc(held, func(a, b *item) int { return cmp.Compare(a.streamSeq, b.streamSeq) })
	for _, it := range held {
		in.route(it)
	}
}

// route queues a classified message on its lane, or on the dead-letter
// lane if it is poison; routeMu must be held.
func (in *Ingester) route(it *item) {
	if it.reason != "" {
		in.enqueue(in.poison, it)
		return
	}
	if it.task.SubjectHashed && in.collisions.observe(it.msg.Subject(), it.task.DocKey) && in.collided(it) {
		in.enqueue(in.poison, it)
		return
	}
	t := it.task
	it.key = WorkflowID(t.Tenant, t.TriggerID, t.Collection, t.DocKey)
	in.enqueue(in.lanes[in.laneOf(it)], it)
}

// classify decodes the task and checks it against its subject, setting
// it.reason when the message is poison.
func (in *Ingester) classify(it *item) {
	task, err := trigger.DecodeTask(it.msg.Data())
	if err != nil {
		it.reason, it.detail = ReasonInvalidTask, err.Error()
		return
	}
	it.task = task
	if in.cfg.Verifier != nil {
		// First: nothing else a task says is believed before this.
		if err := in.cfg.Verifier.Verify(task); err != nil {
			it.reason, it.detail = ReasonUnauthenticated, err.Error()
			return
		}
	}
	if _, err := streams.ParseSubject(it.msg.Subject()); err != nil {
		it.reason, it.detail = ReasonInvalidSubject, err.Error()
		return
	}
	if err := in.checkSubject(it.msg.Subject(), task); err != nil {
		it.reason, it.detail = ReasonSubjectMismatch, err.Error()
		return
	}
	it.labels = labels{task.Tenant, task.MetricCollection(), strconv.FormatBool(task.SubjectHashed)}
}

// checkSubject verifies that subject is the one the publisher builds from
// the task's own key. The subject's docKey token may be a hash, so the
// payload is the key's only source of truth; this check keeps a message
// filed under one key from carrying another's task.
func (in *Ingester) checkSubject(subject string, t *trigger.DeliveryTask) error {
	want, err := streams.BuildSubject(in.cfg.Stream, t.Tenant, t.Collection, t.DocKey)
	if err != nil {
		return fmt.Errorf("the task's key builds no subject: %w", err)
	}
	if want.Hashed != t.SubjectHashed {
		return fmt.Errorf("task has subjectHashed %t, but its key builds a subject with hashed %t", t.SubjectHashed, want.Hashed)
	}
	name := want.Name
	if want.Hashed && in.hashToken != nil {
		enc, _ := streams.EncodeDocKey(t.DocKey) // BuildSubject succeeded, so the key encodes
		name = name[:strings.LastIndexByte(name, '.')+1] + in.hashToken(enc)
	}
	if name != subject {
		return fmt.Errorf("subject is %q, but the task's key builds %q", truncate(subject), truncate(name))
	}
	return nil
}

// collided counts and logs a hashed subject carrying a second docKey and
// reports whether the policy dead-letters the message.
func (in *Ingester) collided(it *item) bool {
	t := it.task
	policy := in.cfg.CollisionPolicy
	in.m.collisions.WithLabelValues(t.Tenant, t.MetricCollection(), string(policy)).Inc()
	in.note("collision", it)
	attrs := []any{"subject", it.msg.Subject(), "tenant", t.Tenant, "collection", t.Collection,
		"docKey", truncate(t.DocKey), "eventId", t.EventID, "policy", policy}
	switch policy {
	case CollisionFail:
		it.reason = ReasonHashCollision
		it.detail = "hashed subject " + truncate(it.msg.Subject()) + " already carries another docKey"
		in.log.Warn("ingest: hashed subject collision; dead-lettering the task", attrs...)
		return true
	case CollisionAlert:
		in.log.Warn("ingest: hashed subject collision; both keys share a lane", attrs...)
	default:
		in.log.Info("ingest: hashed subject collision; both keys share a lane", attrs...)
	}
	return false
}

// laneOf picks the lane from the task's (tenant, trigger, collection, key).
// For a hashed subject the key is the subject's hash token, so documents
// whose tokens collide share a lane and keep their stream order.
func (in *Ingester) laneOf(it *item) int {
	t := it.task
	key, kind := t.DocKey, "k"
	if t.SubjectHashed {
		s := it.msg.Subject()
		key, kind = s[strings.LastIndexByte(s, '.')+1:], "h"
	}
	h := fnv.New64a()
	var n [8]byte
	for _, p := range []string{t.Tenant, t.TriggerID, t.Collection, kind, key} {
		binary.BigEndian.PutUint64(n[:], uint64(len(p)))
		h.Write(n[:])
		h.Write([]byte(p))
	}
	return int(mix64(h.Sum64()) % uint64(len(in.lanes)))
}

// mix64 is MurmurHash3's finalizer: FNV's low bits alone spread keys that
// differ only near their end poorly over a few lanes.
func mix64(x uint64) uint64 {
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	x *= 0xc4ceb9fe1a85ec53
	x ^= x >> 33
	return x
}

func (in *Ingester) enqueue(l *lane, it *item) {
	if !l.push(it) {
		// The lane has shut down; hand the message straight back.
		in.nak(it)
	}
}
