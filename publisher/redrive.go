package publisher

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/triggerflow/triggerflow/deadletter"
	"github.com/triggerflow/triggerflow/streams"
	"github.com/triggerflow/triggerflow/trigger"
)

// ErrNotRedrivable is returned for a dead letter without a decodable task (a
// message that never decoded, an oversize task): there is nothing to send
// again; fix the source and let the change flow anew.
var ErrNotRedrivable = errors.New("dead letter holds no task to redrive")

// Redrive sends the task of record seq through the normal path again: it
// is republished on the task stream with Redrive set to seq (so JetStream
// and the delivery workflow treat it as new, while the receiver sees the
// same webhook-id), and the record is removed from the dead-letter stream
// once the republish was acknowledged. It returns the redriven task.
func Redrive(ctx context.Context, js jetstream.JetStream, dlqStream, taskStream string, seq uint64) (*trigger.DeliveryTask, error) {
	rec, err := deadletter.Get(ctx, js, dlqStream, seq)
	if err != nil {
		return nil, err
	}
	if len(rec.Task) == 0 {
		return nil, fmt.Errorf("%w (record %d: %s)", ErrNotRedrivable, seq, rec.Reason)
	}
	task, err := trigger.DecodeTask(rec.Task)
	if err != nil {
		return nil, fmt.Errorf("%w (record %d: %v)", ErrNotRedrivable, seq, err)
	}
	task.Redrive = seq
	subj, err := streams.BuildSubject(taskStream, task.Tenant, task.Collection, task.DocKey)
	if err != nil {
		return nil, fmt.Errorf("%w (record %d: %v)", ErrNotRedrivable, seq, err)
	}
	task.SubjectHashed = subj.Hashed
	body, err := task.Encode()
	if err != nil {
		return nil, err
	}
	msg := nats.NewMsg(subj.Name)
	msg.Data = body
	msg.Header.Set(jetstream.MsgIDHeader, task.DedupeKey())
	if _, err := js.PublishMsg(ctx, msg); err != nil {
		return nil, fmt.Errorf("redrive: redrive %d: %w", seq, err)
	}
	s, err := js.Stream(ctx, dlqStream)
	if err == nil {
		err = s.DeleteMsg(ctx, seq)
	}
	if err != nil {
		return task, fmt.Errorf("redrive: record %d was redriven but not removed: %w", seq, err)
	}
	return task, nil
}
