package ingest

import "github.com/triggerflow/triggerflow/trigger"

// WithHashToken replaces streams.HashToken when checking hashed subjects,
// so tests can publish colliding subjects.
func WithHashToken(f func(encodedDocKey string) string) Option {
	return func(in *Ingester) { in.hashToken = f }
}

// WithBeforeAck runs f after a successful hand-off; returning false leaves
// the message neither acked nor handed back, as a crash would.
func WithBeforeAck(f func(*trigger.DeliveryTask) bool) Option {
	return func(in *Ingester) { in.beforeAck = f }
}

// Step is one thing that happened to a message.
type Step struct {
	Kind      string // received, signalled, acked, naked, terminated, handoff-error, collision
	Subject   string
	StreamSeq uint64
	Delivered uint64
	EventID   string // empty if the payload did not decode
	Reason    string // dead-letter reason, if any
}

// WithSteps calls f for every step; f must not block.
func WithSteps(f func(Step)) Option {
	return func(in *Ingester) {
		in.notify = func(kind string, it *item) {
			s := Step{Kind: kind, Subject: it.msg.Subject(), StreamSeq: it.streamSeq, Delivered: it.delivered, Reason: it.reason}
			if it.task != nil {
				s.EventID = it.task.EventID
			}
			f(s)
		}
	}
}
