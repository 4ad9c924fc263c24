package testenv_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/triggerflow/triggerflow/activities"
	"github.com/triggerflow/triggerflow/authn"
	"github.com/triggerflow/triggerflow/internal/testenv"
	"github.com/triggerflow/triggerflow/signature"
	"github.com/triggerflow/triggerflow/trigger"
)

// errorsTB records the recorder's Errorf calls instead of failing the test.
type errorsTB struct {
	testing.TB
	mu   sync.Mutex
	errs []string
}

func (e *errorsTB) Errorf(format string, args ...any) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.errs = append(e.errs, fmt.Sprintf(format, args...))
}

func (e *errorsTB) errors() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.errs...)
}

// delivery is a request as the worker sends it: the body of a task, signed,
// with a bearer token.
func delivery(t *testing.T) (http.Header, []byte) {
	t.Helper()
	task := trigger.DeliveryTask{
		EventID: "evt_6d1c", Tenant: "acme", TriggerID: "orders-hook", Collection: "orders", DocKey: "o-1",
		Type: trigger.EventCreate, After: json.RawMessage(`{"total":3}`),
		CommitTime: time.Date(2026, 5, 6, 7, 8, 9, 123_000_000, time.UTC),
	}
	body, err := activities.Body(&task)
	require.NoError(t, err)
	secret, err := signature.NewSecret()
	require.NoError(t, err)
	now := time.Now()
	sig, err := signature.Sign(task.EventID, now, body, secret)
	require.NoError(t, err)
	issuer, err := authn.NewIssuer(authn.Config{})
	require.NoError(t, err)
	token, err := issuer.Token(context.Background(), task.Tenant)
	require.NoError(t, err)
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	h.Set(signature.HeaderID, task.EventID)
	h.Set(signature.HeaderTimestamp, strconv.FormatInt(now.Unix(), 10))
	h.Set(signature.HeaderSignature, sig)
	h.Set("Authorization", "Bearer "+token)
	return h, body
}

// TestRecorderHoldsRequestsToTheDeliveryContract sends the recorder one
// request each and checks that it fails the test exactly for the ones that
// are not Triggerflow deliveries.
func TestRecorderHoldsRequestsToTheDeliveryContract(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		method string
		edit   func(h http.Header, body []byte) []byte
		opts   []testenv.RecorderOption
		want   string // in the one error; "" means no error
	}{
		{name: "delivery"},
		{name: "unsigned delivery without token", edit: func(h http.Header, b []byte) []byte {
			h.Del(signature.HeaderSignature)
			h.Del("Authorization")
			return b
		}},
		{name: "body outside the schema", edit: func(_ http.Header, b []byte) []byte {
			return bytes.Replace(b, []byte(`"subjectHashed":false`), []byte(`"subjectHashed":"no"`), 1)
		}, want: "delivery.schema.json"},
		{name: "extra field", edit: func(_ http.Header, b []byte) []byte {
			return bytes.Replace(b, []byte(`"data":{`), []byte(`"data":{"extra":1,`), 1)
		}, want: "additional properties 'extra'"},
		{name: "not JSON", edit: func(_ http.Header, b []byte) []byte { return b[:len(b)-1] }, want: "not JSON"},
		{name: "webhook-id is not the eventId", edit: func(h http.Header, b []byte) []byte {
			h.Set(signature.HeaderID, "evt_other")
			return b
		}, want: "webhook-id"},
		{name: "timestamp not in seconds", edit: func(h http.Header, b []byte) []byte {
			h.Set(signature.HeaderTimestamp, "1778051289.5")
			return b
		}, want: "webhook-timestamp"},
		{name: "malformed signature", edit: func(h http.Header, b []byte) []byte {
			h.Set(signature.HeaderSignature, "v1,bm90IGEgbWFj")
			return b
		}, want: "webhook-signature"},
		{name: "other auth scheme", edit: func(h http.Header, b []byte) []byte {
			h.Set("Authorization", "Basic YTpi")
			return b
		}, want: "Authorization"},
		{name: "form post", edit: func(h http.Header, b []byte) []byte {
			h.Set("Content-Type", "application/x-www-form-urlencoded")
			return b
		}, want: "Content-Type"},
		{name: "GET", method: http.MethodGet, want: "method"},
		{name: "any request allowed", opts: []testenv.RecorderOption{testenv.AnyRequests()}, edit: func(h http.Header, _ []byte) []byte {
			h.Del(signature.HeaderID)
			return []byte(`{"n":1}`)
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			tb := &errorsTB{TB: t}
			rec := testenv.Recorder(tb, c.opts...)
			h, body := delivery(t)
			if c.edit != nil {
				body = c.edit(h, body)
			}
			method := http.MethodPost
			if c.method != "" {
				method = c.method
			}
			req, err := http.NewRequest(method, rec.URL()+"/hooks/orders", bytes.NewReader(body))
			require.NoError(t, err)
			req.Header = h
			hc := &http.Client{Transport: &http.Transport{}, Timeout: 10 * time.Second}
			t.Cleanup(hc.CloseIdleConnections)
			resp, err := hc.Do(req)
			require.NoError(t, err)
			require.NoError(t, resp.Body.Close())
			require.Equal(t, http.StatusOK, resp.StatusCode, "the recorder still answers as programmed")

			// The check ran before the response was written.
			errs := tb.errors()
			if c.want == "" {
				require.Empty(t, errs)
				return
			}
			require.Len(t, errs, 1)
			require.Contains(t, errs[0], "breaks the delivery contract")
			require.Contains(t, errs[0], c.want)
		})
	}
}
