package ingest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/triggerflow/triggerflow/streams"
)

// Consumer provisioning errors. ErrConsumerDrift also matches
// streams.ErrDrift, so a binary can treat stream and consumer drift alike.
var (
	ErrConsumerDrift   = fmt.Errorf("consumer %w", streams.ErrDrift)
	ErrConsumerMissing = fmt.Errorf("consumer %w", streams.ErrMissing)
)

// redeliveryBackoff grows the ack deadline of a task each time it is
// redelivered after an ack timeout, so a task whose hand-off keeps crashing
// ingest does not crash it every AckWait. The first entry is AckWait itself
// (JetStream uses BackOff[0] as the ack deadline of the first delivery).
var redeliveryBackoff = []int{1, 2, 4}

// ConsumerConfig is the durable consumer ingest reads tasks with: explicit
// acks, one filter over the whole stream, AckWait growing on redelivery,
// and, in pinned mode, a priority group with the pinned_client policy.
//
// The server's MaxDeliver is Config.MaxDeliver+1: JetStream stops
// delivering a task silently after MaxDeliver, so ingest keeps one delivery
// for itself, on which it dead-letters the task (reason "max-deliver")
// instead of handing it off.
func ConsumerConfig(cfg Config) jetstream.ConsumerConfig {
	ack := cfg.AckWait
	maxDeliver := -1
	if cfg.MaxDeliver > 0 {
		maxDeliver = cfg.MaxDeliver + 1
	}
	var backoff []time.Duration
	for _, f := range redeliveryBackoff {
		if maxDeliver != -1 && len(backoff) == maxDeliver {
			break
		}
		backoff = append(backoff, time.Duration(f)*ack)
	}
	cc := jetstream.ConsumerConfig{
		Durable:       cfg.Consumer,
		Description:   "Triggerflow ingest: delivery tasks to Temporal workflows",
		FilterSubject: cfg.Stream + ".>",
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       ack,
		BackOff:       backoff,
		MaxDeliver:    maxDeliver,
		MaxAckPending: cfg.MaxAckPending,
		ReplayPolicy:  jetstream.ReplayInstantPolicy,
	}
	if cfg.Sharing == SharingPinned {
		cc.PriorityPolicy = jetstream.PriorityPolicyPinned
		cc.PriorityGroups = []string{pinnedGroup}
		cc.PinnedTTL = cfg.PinnedTTL
	}
	return cc
}

// ensureConsumer creates or updates the consumer (provisioning "create") or
// checks that it exists as configured ("verify").
func ensureConsumer(ctx context.Context, js jetstream.JetStream, cfg Config) (jetstream.Consumer, error) {
	want := ConsumerConfig(cfg)
	stream := cfg.Stream
	if cfg.Provisioning != streams.ProvisionVerify {
		c, err := js.CreateOrUpdateConsumer(ctx, stream, want)
		if err != nil {
			return nil, fmt.Errorf("create or update consumer %q on stream %q: %w", want.Durable, stream, err)
		}
		return c, nil
	}
	c, err := js.Consumer(ctx, stream, want.Durable)
	switch {
	case errors.Is(err, jetstream.ErrConsumerNotFound):
		return nil, fmt.Errorf("%w: %q on stream %q does not exist (provisioning is verify: create it, or set nats.provisioning: create)",
			ErrConsumerMissing, want.Durable, stream)
	case err != nil:
		return nil, fmt.Errorf("look up consumer %q on stream %q: %w", want.Durable, stream, err)
	}
	if diffs := ConsumerDiff(want, c.CachedInfo().Config); len(diffs) > 0 {
		return nil, fmt.Errorf("%w: %q on stream %q: %s", ErrConsumerDrift, want.Durable, stream, strings.Join(diffs, "; "))
	}
	return c, nil
}

// ConsumerDiff lists the settings ingest relies on where have differs from
// want.
func ConsumerDiff(want, have jetstream.ConsumerConfig) []string {
	hf, wf := filters(have), filters(want)
	var d []string
	for _, c := range []struct {
		name       string
		same       bool
		have, want any
	}{
		{"filter subjects", slices.Equal(hf, wf), hf, wf},
		{"deliver policy", have.DeliverPolicy == want.DeliverPolicy, have.DeliverPolicy, want.DeliverPolicy},
		{"ack policy", have.AckPolicy == want.AckPolicy, have.AckPolicy, want.AckPolicy},
		{"ack wait", have.AckWait == want.AckWait, have.AckWait, want.AckWait},
		{"backoff", slices.Equal(have.BackOff, want.BackOff), have.BackOff, want.BackOff},
		{"max deliver", have.MaxDeliver == want.MaxDeliver, have.MaxDeliver, want.MaxDeliver},
		{"max ack pending", have.MaxAckPending == want.MaxAckPending, have.MaxAckPending, want.MaxAckPending},
		{"priority policy", have.PriorityPolicy == want.PriorityPolicy, have.PriorityPolicy, want.PriorityPolicy},
		{"priority groups", slices.Equal(have.PriorityGroups, want.PriorityGroups), have.PriorityGroups, want.PriorityGroups},
		{"pinned TTL", want.PriorityPolicy != jetstream.PriorityPolicyPinned || have.PinnedTTL == want.PinnedTTL, have.PinnedTTL, want.PinnedTTL},
	} {
		if !c.same {
			d = append(d, fmt.Sprintf("%s is %v, want %v", c.name, c.have, c.want))
		}
	}
	return d
}

func filters(c jetstream.ConsumerConfig) []string {
	f := slices.Clone(c.FilterSubjects)
	if c.FilterSubject != "" {
		f = append(f, c.FilterSubject)
	}
	slices.Sort(f)
	return f
}
