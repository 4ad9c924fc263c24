package activities_test

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/triggerflow/triggerflow/activities"
	"github.com/triggerflow/triggerflow/deadletter"
	"github.com/triggerflow/triggerflow/egress"
	"github.com/triggerflow/triggerflow/internal/testenv"
	"github.com/triggerflow/triggerflow/signature"
	"github.com/triggerflow/triggerflow/tasksig"
	"github.com/triggerflow/triggerflow/trigger"
)

type countingSecrets struct{ calls atomic.Int32 }

func (c *countingSecrets) Resolve(context.Context, string, string) ([]signature.Secret, error) {
	c.calls.Add(1)
	return []signature.Secret{signature.Secret("0123456789abcdef0123456789abcdef")}, nil
}

type countingTokens struct{ calls atomic.Int32 }

func (c *countingTokens) Token(context.Context, string) (string, error) {
	c.calls.Add(1)
	return "token", nil
}

type discardSink struct{}

func (discardSink) Publish(context.Context, deadletter.Record) error { return nil }

// A task whose signature does not verify fails non-retryably before the
// worker resolves a secret, mints a token or sends anything.
func TestUnauthenticatedTaskGetsNoSecretNoTokenNoRequest(t *testing.T) {
	t.Parallel()
	rec := testenv.Recorder(t, testenv.AnyRequests())
	pub, priv, err := ed25519.GenerateKey(nil)
	require.NoError(t, err)
	verifier, err := tasksig.NewVerifier(map[string]ed25519.PublicKey{"w1": pub})
	require.NoError(t, err)
	secrets, tokens := &countingSecrets{}, &countingTokens{}
	acts, err := activities.New(activities.Config{Egress: egress.Policy{AllowLoopback: true}, DeadLetters: discardSink{}},
		activities.Deps{Secrets: secrets, Tokens: tokens, Verifier: verifier})
	require.NoError(t, err)

	task := trigger.DeliveryTask{V: trigger.TaskVersion, EventID: "evt_a", Tenant: "acme", TriggerID: "t", Collection: "orders",
		DocKey: "o-1", Type: trigger.EventCreate, Position: "1", CommitTime: time.Now(), URL: rec.URL() + "/hook",
		SecretsRef: "default", After: json.RawMessage(`{}`)}
	res, err := acts.DeliverBatch(context.Background(), []trigger.DeliveryTask{task})
	require.NoError(t, err)
	require.Zero(t, res.Delivered)
	require.NotNil(t, res.Failure)
	require.Equal(t, activities.TypeUnauthenticated, res.Failure.Type)
	require.False(t, res.Failure.Retryable)
	require.Zero(t, secrets.calls.Load(), "no secret resolved")
	require.Zero(t, tokens.calls.Load(), "no token minted")
	require.Empty(t, rec.Requests(), "nothing sent")

	signer, err := tasksig.NewSigner("w1", priv)
	require.NoError(t, err)
	signer.Sign(&task)
	res, err = acts.DeliverBatch(context.Background(), []trigger.DeliveryTask{task})
	require.NoError(t, err)
	require.Equal(t, 1, res.Delivered, "the signed task is delivered: %+v", res.Failure)
}
