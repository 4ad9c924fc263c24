package signature_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	"github.com/stretchr/testify/require"

	"github.com/triggerflow/triggerflow/authn"
	"github.com/triggerflow/triggerflow/internal/testenv"
	"github.com/triggerflow/triggerflow/signature"
	"github.com/triggerflow/triggerflow/trigger"
)

const receiversDoc = "../docs/receivers.md"

// BEGIN receiver example

// Delivery is the webhook body.
type Delivery struct {
	Type      string    `json:"type"` // document.created, document.updated or document.deleted
	Timestamp time.Time `json:"timestamp"`
	Data      struct {
		Tenant         string          `json:"tenant"`
		TriggerID      string          `json:"triggerId"`
		TriggerVersion string          `json:"triggerVersion"`
		Collection     string          `json:"collection"`
		DocKey         string          `json:"docKey"`
		EventID        string          `json:"eventId"`
		Before         json.RawMessage `json:"before"` // null for a create
		After          json.RawMessage `json:"after"`  // null for a delete
		SubjectHashed  bool            `json:"subjectHashed"`
		CommitTime     time.Time       `json:"commitTime"`
	} `json:"data"`
}

// Receiver verifies each delivery and hands every event to Handle once.
type Receiver struct {
	Webhook *standardwebhooks.Webhook // from the trigger's "whsec_…" secret
	JWKSURL string                    // http://<worker ops address>/.well-known/jwks.json
	Handle  func(context.Context, *Delivery) error

	keys atomic.Pointer[authn.Verifier] // the worker's token keys
	done sync.Map                       // handled event ids; keep them in your database instead
}

func (rc *Receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
	if err != nil {
		http.Error(w, "body too large", http.StatusRequestEntityTooLarge)
		return
	}
	// The signature covers the body's exact bytes: verify before parsing.
	// Verify also refuses a webhook-timestamp more than 5 minutes away.
	if err := rc.Webhook.Verify(body, r.Header); err != nil {
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	var d Delivery
	if err := json.Unmarshal(body, &d); err != nil {
		http.Error(w, "bad body", http.StatusBadRequest)
		return
	}
	if err := rc.verifyToken(r, d.Data.Tenant); err != nil {
		// 503, not 401: a 4xx is final, and after a key rotation the
		// retry verifies.
		http.Error(w, "bad token", http.StatusServiceUnavailable)
		return
	}
	// A retry has the same webhook-id, which is data.eventId.
	if _, dup := rc.done.Load(d.Data.EventID); dup {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	if err := rc.Handle(r.Context(), &d); err != nil {
		http.Error(w, "try again later", http.StatusServiceUnavailable) // retried
		return
	}
	rc.done.Store(d.Data.EventID, true)
	w.WriteHeader(http.StatusNoContent)
}

// verifyToken checks the bearer token: the worker sent it, for this
// tenant. When the cached keys fail it fetches them again, once: the
// worker's key may have been rotated. Only a correctly signed request gets
// here, so only Triggerflow can make it fetch.
func (rc *Receiver) verifyToken(r *http.Request, tenant string) error {
	token, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if keys := rc.keys.Load(); keys != nil {
		if _, err := keys.Verify(token, tenant); err == nil {
			return nil
		}
	}
	keys, err := FetchKeys(r.Context(), rc.JWKSURL)
	if err != nil {
		return err
	}
	rc.keys.Store(keys)
	_, err = keys.Verify(token, tenant)
	return err
}

// FetchKeys reads the worker's token keys.
func FetchKeys(ctx context.Context, jwksURL string) (*authn.Verifier, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, jwksURL, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", jwksURL, resp.Status)
	}
	jwks, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	// The defaults check iss "triggerflow" and aud "webhook", the worker's
	// defaults (worker.tokens.issuer and .audience).
	return authn.NewVerifier(jwks, authn.VerifierConfig{})
}

// END receiver example

// TestReceiverExampleIsTheDocumentedOne keeps the Go receiver of
// docs/receivers.md compiled and tested: the doc quotes the code between
// the markers above verbatim.
func TestReceiverExampleIsTheDocumentedOne(t *testing.T) {
	t.Parallel()
	testenv.RequireQuoted(t, "receiver_example_test.go", "receiver", receiversDoc)
}

// TestReceiverExample runs the documented receiver on deliveries the
// worker's activity made: it accepts each once, answers a retry without
// handling it again, refuses what is forged, has a failure retried and
// follows a rotation of the worker's token key.
func TestReceiverExample(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	newIssuer := func() *authn.Issuer {
		issuer, err := authn.NewIssuer(authn.Config{})
		require.NoError(t, err)
		return issuer
	}
	var serving atomic.Pointer[authn.Issuer] // the worker's current key
	serving.Store(newIssuer())
	var fetches atomic.Int32
	jwks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		serving.Load().Handler().ServeHTTP(w, r)
	}))
	t.Cleanup(jwks.Close)
	secret, err := signature.NewSecret()
	require.NoError(t, err)

	tasks := deliveryTasks()
	reqs := deliver(t, []signature.Secret{secret}, serving.Load(), tasks...)

	wh, err := standardwebhooks.NewWebhook(secret.Encode())
	require.NoError(t, err)
	var handled []string
	var fail atomic.Bool
	rc := &Receiver{Webhook: wh, JWKSURL: jwks.URL + authn.JWKSPath, Handle: func(_ context.Context, d *Delivery) error {
		if fail.Load() {
			return errors.New("database down")
		}
		handled = append(handled, d.Type+" "+d.Data.EventID)
		return nil
	}}
	serve := func(r testenv.Request, edit func(h http.Header, body []byte) []byte) int {
		h, body := r.Headers.Clone(), bytes.Clone(r.Body)
		if edit != nil {
			body = edit(h, body)
		}
		req := httptest.NewRequest(r.Method, r.Path, bytes.NewReader(body))
		req.Header = h
		w := httptest.NewRecorder()
		rc.ServeHTTP(w, req)
		return w.Code
	}

	fail.Store(true)
	require.Equal(t, http.StatusServiceUnavailable, serve(reqs[0], nil), "a failure is answered with a status that is retried")
	fail.Store(false)
	var want []string
	for i, r := range reqs {
		require.Equal(t, http.StatusNoContent, serve(r, nil))
		require.Equal(t, http.StatusNoContent, serve(r, nil), "a retry is acknowledged")
		want = append(want, "document."+map[trigger.EventType]string{
			trigger.EventCreate: "created", trigger.EventUpdate: "updated", trigger.EventDelete: "deleted",
		}[tasks[i].Type]+" "+tasks[i].EventID)
	}
	require.Equal(t, want, handled, "each event handled once, in order")
	require.Equal(t, int32(1), fetches.Load(), "the keys are fetched once and cached")

	other, err := serving.Load().Token(ctx, "other-tenant")
	require.NoError(t, err)
	for name, c := range map[string]struct {
		edit func(h http.Header, body []byte) []byte
		want int
	}{
		"changed body": {func(_ http.Header, b []byte) []byte {
			return bytes.Replace(b, []byte(`"acme"`), []byte(`"acmf"`), 1)
		}, http.StatusUnauthorized},
		"unsigned": {func(h http.Header, b []byte) []byte { h.Del(signature.HeaderSignature); return b }, http.StatusUnauthorized},
		"old":      {func(h http.Header, b []byte) []byte { h.Set(signature.HeaderTimestamp, "1700000000"); return b }, http.StatusUnauthorized},
		"no token": {func(h http.Header, b []byte) []byte { h.Del("Authorization"); return b }, http.StatusServiceUnavailable},
		"other tenant's token": {func(h http.Header, b []byte) []byte {
			h.Set("Authorization", "Bearer "+other)
			return b
		}, http.StatusServiceUnavailable},
	} {
		require.Equal(t, c.want, serve(reqs[1], c.edit), name)
	}
	require.Len(t, handled, len(tasks), "nothing forged was handled")

	// The worker's key is replaced: its next delivery verifies after one
	// more fetch.
	serving.Store(newIssuer())
	before := fetches.Load()
	tk := tasks[0]
	tk.EventID, tk.Position = trigger.NewEventID("acme", tk.TriggerID, tk.Collection, tk.DocKey, "4"), "4"
	rotated := deliver(t, []signature.Secret{secret}, serving.Load(), tk)
	require.Equal(t, http.StatusNoContent, serve(rotated[0], nil))
	require.Equal(t, before+1, fetches.Load())
	require.Len(t, handled, len(tasks)+1)
}
