package ingest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/triggerflow/triggerflow/internal/backoff"
)

// Takeover outcomes, the values of triggerflow_ingest_takeovers_total's
// outcome label.
const (
	takeoverTaken    = "taken"           // holder dead: consumer reset and unpinned
	takeoverAlive    = "holder-alive"    // holder answered: nothing to do
	takeoverTooLong  = "replay-too-long" // holder dead but the replay would exceed TakeoverMaxReplay
	takeoverFailed   = "failed"          // a JetStream call failed; retried at the next check
	takeoverUnproven = "holder-unproven" // no answer but no proof of death either (timeout)
)

// livenessSubject is where the replica holding pin id pin answers while
// its NATS connection lives. The server drops a connection's
// subscriptions the moment the connection closes, so a request there
// fails at once with "no responders" when the holder is gone.
func (c Config) livenessSubject(pin string) string {
	return fmt.Sprintf("_TRIGGERFLOW.ingest.%s.%s.%s", c.Stream, c.Consumer, pin)
}

// takeoverGrace is how long a pin must have been held before its holder's
// silence counts: a replica learns its pin id from its first message and
// subscribes to its liveness subject then, a moment after the server
// pinned it.
const takeoverGrace = time.Second

// confirmDelay separates the two liveness probes a takeover needs, so a
// holder that was pinned and received its first message between two
// checks has answered by the second.
const confirmDelay = 100 * time.Millisecond

// learnPin is called with the pin id of every message received: the first
// time a pin id is seen this replica starts answering on its liveness
// subject, and stops answering on the previous one.
func (in *Ingester) learnPin(pin string) {
	if old, _ := in.pinID.Load().(string); old == pin {
		return
	}
	in.pinID.Store(pin)
	in.livenessMu.Lock()
	defer in.livenessMu.Unlock()
	if in.liveness != nil {
		_ = in.liveness.Unsubscribe()
		in.liveness = nil
	}
	me, _ := json.Marshal(map[string]any{"pin": pin, "host": hostname(), "pid": os.Getpid()})
	sub, err := in.js.Conn().Subscribe(in.cfg.livenessSubject(pin), func(m *nats.Msg) { _ = m.Respond(me) })
	if err != nil {
		// Without it a standby may take the pin from this live replica:
		// duplicates, not loss or reordering (see Config.TakeoverInterval).
		in.log.Warn("ingest: cannot answer liveness probes; a standby may take over while this replica lives", "err", err)
		return
	}
	in.liveness = sub
}

func (in *Ingester) stopLiveness() {
	in.livenessMu.Lock()
	defer in.livenessMu.Unlock()
	if in.liveness != nil {
		_ = in.liveness.Unsubscribe()
		in.liveness = nil
	}
}

// replaySubject carries the replay horizon of a takeover to every replica.
func (c Config) replaySubject() string {
	return fmt.Sprintf("_TRIGGERFLOW.ingest-replay.%s.%s", c.Stream, c.Consumer)
}

// followReplayHorizon raises replayHorizon with every horizon a takeover
// announces.
func (in *Ingester) followReplayHorizon() *nats.Subscription {
	sub, err := in.js.Conn().Subscribe(in.cfg.replaySubject(), func(m *nats.Msg) {
		if n, err := strconv.ParseUint(string(m.Data), 10, 64); err == nil {
			in.raiseReplayHorizon(n)
		}
	})
	if err != nil {
		in.log.Warn("ingest: cannot follow takeover replays; a replayed task another replica delivered may be delivered again", "err", err)
		return nil
	}
	return sub
}

// announceReplayHorizon raises the horizon here and on every replica. The
// flush puts the announcement on the wire before the reset: core NATS
// delivers it to the other replicas ahead of the replay in practice, not
// by guarantee, so a replica that missed it delivers a replayed task again
// at worst, as before closed runs were checked.
func (in *Ingester) announceReplayHorizon(seq uint64) {
	in.raiseReplayHorizon(seq)
	nc := in.js.Conn()
	if err := nc.Publish(in.cfg.replaySubject(), []byte(strconv.FormatUint(seq, 10))); err == nil {
		_ = nc.Flush()
	}
}

func (in *Ingester) raiseReplayHorizon(seq uint64) {
	for {
		cur := in.replayHorizon.Load()
		if seq <= cur || in.replayHorizon.CompareAndSwap(cur, seq) {
			return
		}
	}
}

func hostname() string {
	h, _ := os.Hostname()
	return h
}

// watchPin runs on a pinned replica that does not hold the pin (a standby,
// or a replica restarted after a crash): right away and then every
// TakeoverInterval it checks whether the pin holder is dead while tasks
// wait, and if so takes over.
func (in *Ingester) watchPin() {
	defer close(in.watchDone)
	tick := time.NewTicker(in.cfg.TakeoverInterval)
	defer tick.Stop()
	for {
		ctx, cancel := context.WithTimeout(in.work, max(in.cfg.TakeoverInterval, 5*time.Second))
		in.checkPin(ctx)
		cancel()
		select {
		case <-in.watchStop:
			return
		case <-tick.C:
		}
	}
}

// checkPin takes over the consumer from a dead pin holder.
//
// JetStream would move the pin only after PinnedTTL, and the dead
// replica's unacked tasks come back only after their ack wait. A
// replica that knows the holder is dead does not need to wait for
// either: it resets the consumer to its ack floor, so JetStream delivers
// every unacked task again in stream order before any newer one, then
// unpins the group, so the next pull request (its own, or another
// standby's) is pinned. Tasks acked above the ack floor are delivered
// again too: duplicates that the delivery workflow drops by event id.
//
// Death is proven, not guessed: the holder answers on its liveness
// subject for as long as its NATS connection lives, so "no responders"
// twice, confirmDelay apart, on a pin older than takeoverGrace, means its
// connection is gone. A holder cut off from NATS but still running loses
// the pin this way too; what it hands off late is a duplicate of what the
// new holder hands off in order.
func (in *Ingester) checkPin(ctx context.Context) {
	pin, _, ok := in.deadHolder(ctx)
	if !ok {
		return
	}
	// Second probe: a holder pinned between our info read and its first
	// message has subscribed by now.
	if !backoff.Sleep(ctx, confirmDelay) {
		return
	}
	again, info, ok := in.deadHolder(ctx)
	if !ok || again != pin {
		return
	}
	replay := info.Delivered.Stream - info.AckFloor.Stream
	if replay > uint64(in.cfg.TakeoverMaxReplay) {
		in.takeoverOutcome(takeoverTooLong, "", nil,
			"replay", replay, "takeoverMaxReplay", in.cfg.TakeoverMaxReplay, "pinnedTTL", in.cfg.PinnedTTL)
		return
	}
	s, err := in.js.Stream(ctx, in.cfg.Stream)
	if err != nil {
		in.takeoverOutcome(takeoverFailed, "look up stream", err)
		return
	}
	// Every replica learns, before the replay reaches any of them, up to
	// where the dead holder may have handed tasks off without acking.
	in.announceReplayHorizon(info.Delivered.Stream)
	reset, err := s.ResetConsumer(ctx, in.cfg.Consumer)
	if err != nil {
		in.takeoverOutcome(takeoverFailed, "reset consumer", err)
		return
	}
	if err := s.UnpinConsumer(ctx, in.cfg.Consumer, pinnedGroup); err != nil {
		// The reset stands: the tasks are due now, and the pin moves
		// after PinnedTTL at the latest.
		in.takeoverOutcome(takeoverFailed, "unpin consumer", err)
		return
	}
	in.takeoverOutcome(takeoverTaken, "", nil, "deadPin", pin, "replayFrom", reset.ResetSeq, "replay", replay)
}

// deadHolder reports the pin id of a holder that is provably gone while
// tasks wait for it, with the consumer info that showed it, and counts what
// it found.
func (in *Ingester) deadHolder(ctx context.Context) (string, *jetstream.ConsumerInfo, bool) {
	info, err := in.consumer.Info(ctx)
	if err != nil {
		if ctx.Err() == nil {
			in.takeoverOutcome(takeoverFailed, "read consumer info", err)
		}
		return "", nil, false
	}
	var pin string
	var since time.Time
	for _, g := range info.PriorityGroups {
		if g.Group == pinnedGroup {
			pin, since = g.PinnedClientID, g.PinnedTS
		}
	}
	mine, _ := in.pinID.Load().(string)
	now := info.TimeStamp // the server's clock, like PinnedTTL's
	if now.IsZero() {
		now = time.Now()
	}
	switch {
	case pin == "" || pin == mine:
		return "", nil, false // nobody to replace, or it is us
	case info.NumPending == 0 && info.NumAckPending == 0:
		return "", nil, false // nothing waits; the pin moves by itself after PinnedTTL
	case !since.IsZero() && now.Sub(since) < takeoverGrace:
		return "", nil, false
	}
	_, err = in.js.Conn().RequestWithContext(ctx, in.cfg.livenessSubject(pin), nil)
	switch {
	case err == nil:
		in.m.takeovers.WithLabelValues(takeoverAlive).Inc()
		return "", nil, false
	case errors.Is(err, nats.ErrNoResponders):
		return pin, info, true
	case ctx.Err() != nil:
		return "", nil, false
	default:
		in.takeoverOutcome(takeoverUnproven, "", err, "pin", pin)
		return "", nil, false
	}
}

func (in *Ingester) takeoverOutcome(outcome, step string, err error, kv ...any) {
	in.m.takeovers.WithLabelValues(outcome).Inc()
	if step != "" {
		kv = append(kv, "step", step)
	}
	if err != nil {
		kv = append(kv, "err", err)
	}
	switch outcome {
	case takeoverTaken:
		in.log.Warn("ingest: the pinned replica is gone; took over its tasks (replayed from the ack floor, in stream order)", kv...)
	case takeoverTooLong:
		in.log.Warn("ingest: the pinned replica is gone but replaying from the ack floor would resend too many acked tasks; waiting for pinnedTTL", kv...)
	default:
		in.log.Info("ingest: pin takeover check", append(kv, "outcome", outcome)...)
	}
}
