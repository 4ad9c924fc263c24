package signature_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	mrand "math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	"github.com/stretchr/testify/require"

	"github.com/triggerflow/triggerflow/activities"
	"github.com/triggerflow/triggerflow/deadletter"
	"github.com/triggerflow/triggerflow/egress"
	"github.com/triggerflow/triggerflow/internal/testenv"
	"github.com/triggerflow/triggerflow/signature"
	"github.com/triggerflow/triggerflow/trigger"
)

// The official Standard Webhooks library for Go is the reference these
// tests hold the signature package and the worker's deliveries to: a drift
// from the spec on either side fails the build.

func official(t *testing.T, s signature.Secret) *standardwebhooks.Webhook {
	t.Helper()
	wh, err := standardwebhooks.NewWebhook(s.Encode())
	require.NoError(t, err, "the official library reads our secret encoding")
	return wh
}

func TestOfficialLibraryReferenceVector(t *testing.T) {
	t.Parallel()
	wh := official(t, mustSecret(t, refSecret))
	got, err := wh.Sign(refID, time.Unix(refTS, 0), []byte(refBody))
	require.NoError(t, err)
	require.Equal(t, refSig, got, "the vector our tests use is the library's")
	require.NoError(t, wh.VerifyIgnoringTimestamp([]byte(refBody), headers(refID, refTS, refSig)))
}

// randomMessage is a message id, a body (any bytes, not only JSON or
// UTF-8) and secrets of every allowed length.
func randomMessage(t *testing.T, r *mrand.Rand) (string, []byte, []signature.Secret) {
	t.Helper()
	id := "msg_" + strconv.FormatUint(r.Uint64(), 36)
	body := make([]byte, r.IntN(2048))
	_, _ = rand.Read(body)
	secrets := make([]signature.Secret, 1+r.IntN(3))
	for i := range secrets {
		key := make([]byte, signature.MinSecretBytes+r.IntN(signature.MaxSecretBytes-signature.MinSecretBytes+1))
		_, _ = rand.Read(key)
		secrets[i] = mustSecret(t, signature.SecretPrefix+base64.StdEncoding.EncodeToString(key))
	}
	return id, body, secrets
}

// TestOfficialLibraryVerifiesOurSignatures: a header we sign with several
// secrets (a rotation) verifies with each of them alone in the official
// library, and fails for another secret or a changed body.
func TestOfficialLibraryVerifiesOurSignatures(t *testing.T) {
	t.Parallel()
	r := mrand.New(mrand.NewPCG(1, 2))
	for range 200 {
		id, body, secrets := randomMessage(t, r)
		now := time.Now()
		sig, err := signature.Sign(id, now, body, secrets...)
		require.NoError(t, err)
		h := headers(id, now.Unix(), sig)
		for _, s := range secrets {
			require.NoError(t, official(t, s).Verify(body, h))
		}
		other, err := signature.NewSecret()
		require.NoError(t, err)
		require.ErrorIs(t, official(t, other).Verify(body, h), standardwebhooks.ErrNoMatchingSignature)
		changed := append(append([]byte(nil), body...), ' ')
		require.ErrorIs(t, official(t, secrets[0]).Verify(changed, h), standardwebhooks.ErrNoMatchingSignature)
	}
}

// TestWeVerifyOfficialSignatures: what the official library signs, Verify
// accepts, including next to entries of other schemes and secrets.
func TestWeVerifyOfficialSignatures(t *testing.T) {
	t.Parallel()
	r := mrand.New(mrand.NewPCG(3, 4))
	for range 200 {
		id, body, secrets := randomMessage(t, r)
		now := time.Now()
		sig, err := official(t, secrets[0]).Sign(id, now, body)
		require.NoError(t, err)
		require.NoError(t, signature.Verify(headers(id, now.Unix(), sig), body, secrets[:1], 0, now))
		mixed := "v1a,bm90LWVkMjU1MTk= " + sig
		if len(secrets) > 1 {
			other, err := official(t, secrets[1]).Sign(id, now, body)
			require.NoError(t, err)
			mixed = other + " " + mixed
		}
		require.NoError(t, signature.Verify(headers(id, now.Unix(), mixed), body, secrets[:1], 0, now))
		require.ErrorIs(t, signature.Verify(headers(id, now.Unix(), sig), append(body, 'x'), secrets[:1], 0, now), signature.ErrNoMatch)
	}
}

type secretList []signature.Secret

func (s secretList) Resolve(context.Context, string, string) ([]signature.Secret, error) {
	return s, nil
}

type discardDLQ struct{}

func (discardDLQ) Publish(context.Context, deadletter.Record) error { return nil }

// deliver has the worker's activity POST tasks to a recorder and returns
// the requests as they arrived.
func deliver(t *testing.T, secrets []signature.Secret, tokens activities.TokenSource, tasks ...trigger.DeliveryTask) []testenv.Request {
	t.Helper()
	rec := testenv.Recorder(t)
	acts, err := activities.New(activities.Config{Egress: egress.Policy{AllowLoopback: true}, DeadLetters: discardDLQ{}},
		activities.Deps{Secrets: secretList(secrets), Tokens: tokens})
	require.NoError(t, err)
	for i := range tasks {
		tasks[i].URL = rec.URL() + "/hooks/" + tasks[i].TriggerID
		_, err := acts.Deliver(context.Background(), tasks[i])
		require.NoError(t, err)
	}
	reqs := rec.Requests()
	require.Len(t, reqs, len(tasks))
	return reqs
}

// deliveryTasks are one task of each change type, as the evaluator builds
// them.
func deliveryTasks() []trigger.DeliveryTask {
	commit := time.Now().Add(-time.Second).UTC()
	mk := func(typ trigger.EventType, pos string, before, after string) trigger.DeliveryTask {
		tk := trigger.DeliveryTask{
			V: trigger.TaskVersion, EventID: trigger.NewEventID("acme", "orders-hook", "orders", "o-1", pos),
			Tenant: "acme", TriggerID: "orders-hook", TriggerVersion: "2", Collection: "orders", DocKey: "o-1",
			Type: typ, Position: pos, CommitTime: commit, SecretsRef: "default",
			Headers: map[string]string{"X-Source": "interop"},
		}
		if before != "" {
			tk.Before = json.RawMessage(before)
		}
		if after != "" {
			tk.After = json.RawMessage(after)
		}
		return tk
	}
	return []trigger.DeliveryTask{
		mk(trigger.EventCreate, "1", "", `{"status":"new","note":"ünïcode ✓"}`),
		mk(trigger.EventUpdate, "2", `{"status":"new"}`, `{"status":"paid","total":42.5}`),
		mk(trigger.EventDelete, "3", `{"status":"paid"}`, ""),
	}
}

// TestOfficialLibraryVerifiesRealDeliveries: requests the worker's
// delivery activity actually sent, during a secret rotation, verify in
// the official library with either secret.
func TestOfficialLibraryVerifiesRealDeliveries(t *testing.T) {
	t.Parallel()
	oldKey, err := signature.NewSecret()
	require.NoError(t, err)
	newKey, err := signature.NewSecret()
	require.NoError(t, err)
	reqs := deliver(t, []signature.Secret{newKey, oldKey}, nil, deliveryTasks()...)
	for _, r := range reqs {
		require.Len(t, strings.Fields(r.Headers.Get(signature.HeaderSignature)), 2, "one entry per secret")
		for _, s := range []signature.Secret{oldKey, newKey} {
			require.NoError(t, official(t, s).Verify(r.Body, r.Headers))
		}
		stranger, err := signature.NewSecret()
		require.NoError(t, err)
		require.ErrorIs(t, official(t, stranger).Verify(r.Body, r.Headers), standardwebhooks.ErrNoMatchingSignature)

		// The headers are the spec's, under the spec's names.
		require.Equal(t, r.Headers.Get(standardwebhooks.HeaderWebhookID), r.Headers.Get("Webhook-Id"))
		sent, err := strconv.ParseInt(r.Headers.Get(standardwebhooks.HeaderWebhookTimestamp), 10, 64)
		require.NoError(t, err)
		require.InDelta(t, time.Now().Unix(), sent, 60)
	}
	var ids []string
	for _, r := range reqs {
		ids = append(ids, r.Headers.Get(standardwebhooks.HeaderWebhookID))
	}
	for i, tk := range deliveryTasks() {
		require.Equal(t, tk.EventID, ids[i])
	}
}

// TestRetryKeepsWebhookID: a second attempt of a task (a retry, or a
// duplicate after a crash) has the same webhook-id and body and a signature
// of its own that verifies.
func TestRetryKeepsWebhookID(t *testing.T) {
	t.Parallel()
	key, err := signature.NewSecret()
	require.NoError(t, err)
	tk := deliveryTasks()[1]
	reqs := deliver(t, []signature.Secret{key}, nil, tk, tk)
	require.Equal(t, reqs[0].Headers.Get(signature.HeaderID), reqs[1].Headers.Get(signature.HeaderID))
	require.Equal(t, reqs[0].Body, reqs[1].Body)
	for _, r := range reqs {
		require.NoError(t, official(t, key).Verify(r.Body, r.Headers))
	}
}
