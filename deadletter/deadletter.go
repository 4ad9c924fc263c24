// Package deadletter records what Triggerflow gave up on: tasks that could
// not be published, messages ingest could not decode, deliveries that failed
// for good. Each record lands on the dead-letter stream with its reason, so
// nothing is dropped silently and every record can be listed, inspected and
// redriven.
package deadletter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/triggerflow/triggerflow/streams"
	"github.com/triggerflow/triggerflow/trigger"
)

// Stage is where in the pipeline a record was made.
type Stage string

// Stages.
const (
	StageWatch    Stage = "watch"
	StagePublish  Stage = "publish"
	StageIngest   Stage = "ingest"
	StageDelivery Stage = "delivery"
)

// Header names set on every dead-letter message, so tools can filter without
// decoding the body.
const (
	HeaderReason = "Triggerflow-Reason"
	HeaderStage  = "Triggerflow-Stage"
)

// Record is one dead letter.
type Record struct {
	// ID makes publishing idempotent (it is the Nats-Msg-Id): the same
	// failure recorded twice within the duplicate window is stored once.
	ID    string `json:"id"`
	Stage Stage  `json:"stage"`
	// Reason is a short kebab-case code: "oversize", "invalid-task",
	// "subject-mismatch", "http-4xx", "attempts-exhausted", …
	Reason string `json:"reason"`
	// Detail is a human-readable explanation.
	Detail     string `json:"detail,omitempty"`
	Tenant     string `json:"tenant,omitempty"`
	TriggerID  string `json:"triggerId,omitempty"`
	Collection string `json:"collection,omitempty"`
	DocKey     string `json:"docKey,omitempty"`
	EventID    string `json:"eventId,omitempty"`
	// Subject is the original subject, when the record came from a message.
	Subject string `json:"subject,omitempty"`
	// Task is the delivery task, when there was a decodable one; redrive
	// republishes it.
	Task json.RawMessage `json:"task,omitempty"`
	// Payload holds the raw bytes of a message that did not decode.
	Payload []byte    `json:"payload,omitempty"`
	Time    time.Time `json:"time"`
}

// ErrInvalidRecord is returned for a record that lacks an id, stage or reason.
var ErrInvalidRecord = errors.New("deadletter: invalid record")

// Subject returns <stream>.<tenant>.<stage>; a tenant that is not a safe
// subject token (the record may be about a message with a garbage tenant)
// becomes "_".
func Subject(stream, tenant string, stage Stage) string {
	if !trigger.IsToken(tenant) {
		tenant = "_"
	}
	return stream + "." + tenant + "." + string(stage)
}

// Sink stores dead-letter records: the one interface every stage that
// gives up on something writes through. Publish returns nil only once rec
// is stored durably. *Publisher is the production Sink; tests substitute
// their own.
type Sink interface {
	Publish(ctx context.Context, rec Record) error
}

var _ Sink = (*Publisher)(nil)

// Publisher writes records to the dead-letter stream.
type Publisher struct {
	js     jetstream.JetStream
	stream string
}

// NewPublisher returns a publisher for the dead-letter stream named stream
// (which streams.Ensure provisions).
func NewPublisher(js jetstream.JetStream, stream string) *Publisher {
	return &Publisher{js: js, stream: stream}
}

// Publish stores rec and returns once JetStream acknowledged it. Callers
// treat an error as "not recorded" and must not drop what they were handling.
func (p *Publisher) Publish(ctx context.Context, rec Record) error {
	if rec.ID == "" || rec.Stage == "" || rec.Reason == "" {
		return fmt.Errorf("%w: id, stage and reason are required", ErrInvalidRecord)
	}
	if rec.Time.IsZero() {
		rec.Time = time.Now().UTC()
	}
	header := nats.Header{}
	header.Set(jetstream.MsgIDHeader, string(rec.Stage)+":"+rec.ID)
	header.Set(HeaderReason, rec.Reason)
	header.Set(HeaderStage, string(rec.Stage))
	if err := streams.PublishJSON(ctx, p.js, Subject(p.stream, rec.Tenant, rec.Stage), rec, header); err != nil {
		return fmt.Errorf("deadletter: publish %s record %s: %w", rec.Stage, rec.ID, err)
	}
	return nil
}

// Decode parses a record read back from the stream.
func Decode(b []byte) (Record, error) {
	var r Record
	if err := json.Unmarshal(b, &r); err != nil {
		return Record{}, fmt.Errorf("%w: %v", ErrInvalidRecord, err)
	}
	return r, nil
}
