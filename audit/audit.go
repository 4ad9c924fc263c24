// Package audit keeps the trail of operator-visible decisions that change
// what gets delivered: starting from now, replaying from a token, resetting
// or re-seeding a checkpoint, reloading triggers, redriving or purging dead
// letters. Records go to a durable JetStream stream, so the trail survives
// the process that wrote it, and are read back by `triggerflow audit list`.
package audit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/triggerflow/triggerflow/streams"
	"github.com/triggerflow/triggerflow/trigger"
)

// Action names what happened.
type Action string

// Actions.
const (
	ActionStartFromNow     Action = "start-from-now"
	ActionResumeToken      Action = "resume-token"
	ActionCheckpointReset  Action = "checkpoint-reset"
	ActionCheckpointSet    Action = "checkpoint-set"
	ActionCheckpointReseed Action = "checkpoint-reseed"
	ActionTriggersReload   Action = "triggers-reload"
	ActionRedrive          Action = "dead-letter-redrive"
	ActionPurge            Action = "dead-letter-purge"
	ActionRedeliver        Action = "redeliver"
)

// Record is one audit entry.
type Record struct {
	Action Action `json:"action"`
	Tenant string `json:"tenant"`
	// Actor is who asked for it: an operator name, or the process.
	Actor  string `json:"actor"`
	Reason string `json:"reason"`
	// Key is the checkpoint key or other object the action touched.
	Key string `json:"key,omitempty"`
	// Before and After are source positions (or other states) around the
	// action; empty when not applicable.
	Before string    `json:"before,omitempty"`
	After  string    `json:"after,omitempty"`
	Time   time.Time `json:"time"`
}

// ErrInvalid is returned for a record without action, tenant or actor.
var ErrInvalid = errors.New("audit: invalid record")

// Writer appends records to the audit stream.
type Writer struct {
	js     jetstream.JetStream
	stream string
}

// NewWriter returns a writer for the audit stream (provisioned by
// streams.Ensure).
func NewWriter(js jetstream.JetStream, stream string) *Writer {
	return &Writer{js: js, stream: stream}
}

// Write stores rec durably; it returns after JetStream acknowledged it.
func (w *Writer) Write(ctx context.Context, rec Record) error {
	if rec.Action == "" || rec.Tenant == "" || rec.Actor == "" {
		return fmt.Errorf("%w: action, tenant and actor are required", ErrInvalid)
	}
	if rec.Time.IsZero() {
		rec.Time = time.Now().UTC()
	}
	subject := w.stream + "." + subjectToken(rec.Tenant) + "." + string(rec.Action)
	if err := streams.PublishJSON(ctx, w.js, subject, rec, nil); err != nil {
		return fmt.Errorf("audit: write %s for tenant %s: %w", rec.Action, rec.Tenant, err)
	}
	return nil
}

// List returns up to limit records, oldest first, optionally only one
// tenant's ("" for all).
func List(ctx context.Context, js jetstream.JetStream, stream, tenant string, limit int) ([]Record, error) {
	filter := stream + ".>"
	if tenant != "" {
		filter = stream + "." + subjectToken(tenant) + ".>"
	}
	var out []Record
	err := streams.Read(ctx, js, stream, filter, limit, func(m jetstream.Msg) error {
		var r Record
		if err := json.Unmarshal(m.Data(), &r); err != nil {
			return fmt.Errorf("audit: record at %s: %w", m.Subject(), err)
		}
		out = append(out, r)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	return out, nil
}

func subjectToken(s string) string {
	if !trigger.IsToken(s) {
		return "_"
	}
	return s
}
