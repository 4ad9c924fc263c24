package streams

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// PublishJSON publishes v, encoded as JSON, on subject with header (which
// may be nil), and returns once JetStream acknowledged it: the one way the
// record streams (dead letters, audit) are written.
func PublishJSON(ctx context.Context, js jetstream.JetStream, subject string, v any, header nats.Header) error {
	body, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode: %w", err)
	}
	msg := nats.NewMsg(subject)
	msg.Data = body
	for k, vs := range header {
		msg.Header[k] = vs
	}
	_, err = js.PublishMsg(ctx, msg)
	return err
}
