package receiver_test

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/triggerflow/triggerflow/authn"
	"github.com/triggerflow/triggerflow/internal/receiver"
	"github.com/triggerflow/triggerflow/secrets"
	"github.com/triggerflow/triggerflow/signature"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// signedDelivery is a delivery of document id as the worker sends it,
// signed with secret.
func signedDelivery(t *testing.T, tenant, trigger, id string, secret signature.Secret) *http.Request {
	t.Helper()
	body := []byte(`{"type":"document.created","data":{"tenant":"` + tenant + `","triggerId":"` + trigger + `","collection":"orders","docKey":"` + id + `"}}`)
	ts := time.Now()
	sig, err := signature.Sign(id, ts, body, secret)
	require.NoError(t, err)
	req := httptest.NewRequest(http.MethodPost, "/hooks", bytes.NewReader(body))
	req.Header.Set(signature.HeaderID, id)
	req.Header.Set(signature.HeaderTimestamp, strconv.FormatInt(ts.Unix(), 10))
	req.Header.Set(signature.HeaderSignature, sig)
	return req
}

func TestReceiverVerifiesSignatureAndToken(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	sec, err := secrets.Ensure(dir, "acme", "default")
	require.NoError(t, err)

	issuer, err := authn.NewIssuer(authn.Config{})
	require.NoError(t, err)
	var fetches atomic.Int32
	jwks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		issuer.Handler().ServeHTTP(w, r)
	}))
	defer jwks.Close()

	rc := receiver.New(receiver.Config{Secrets: secrets.NewDir(dir), JWKSURL: jwks.URL})
	send := func(id string, secret signature.Secret, token string) int {
		req := signedDelivery(t, "acme", "t", id, secret)
		req.Header.Set("Authorization", "Bearer "+token)
		rec := httptest.NewRecorder()
		rc.ServeHTTP(rec, req)
		return rec.Code
	}
	token, err := issuer.Token(context.Background(), "acme")
	require.NoError(t, err)

	require.Equal(t, http.StatusNoContent, send("e1", sec[0], token))
	require.Equal(t, http.StatusNoContent, send("e2", sec[0], token))
	require.EqualValues(t, 1, fetches.Load(), "the key set is fetched once and cached")

	other, err := signature.NewSecret()
	require.NoError(t, err)
	require.Equal(t, http.StatusUnauthorized, send("e3", other, token), "wrong signing secret")

	otherTenant, err := issuer.Token(context.Background(), "other")
	require.NoError(t, err)
	require.Equal(t, http.StatusUnauthorized, send("e4", sec[0], otherTenant), "another tenant's token")

	require.Len(t, rc.Deliveries(), 2, "only verified deliveries are kept")
}

// TestReceiverUsesTheDeliverysTenantSecret: with several tenants, each
// delivery is verified with its own tenant's secret, under the reference
// its trigger signs with, and every printed line names the tenant.
func TestReceiverUsesTheDeliverysTenantSecret(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	demo, err := secrets.Ensure(dir, "demo", "default")
	require.NoError(t, err)
	acme, err := secrets.Ensure(dir, "acme", "default")
	require.NoError(t, err)
	billing, err := secrets.Ensure(dir, "acme", "billing")
	require.NoError(t, err)

	var out bytes.Buffer
	rc := receiver.New(receiver.Config{Secrets: secrets.NewDir(dir), Out: &out, SecretsRefFor: func(tenant, trigger string) string {
		if tenant == "acme" && trigger == "invoice" {
			return "billing"
		}
		return ""
	}})
	send := func(tenant, trigger, id string, secret signature.Secret) int {
		req := signedDelivery(t, tenant, trigger, id, secret)
		rec := httptest.NewRecorder()
		rc.ServeHTTP(rec, req)
		return rec.Code
	}

	require.Equal(t, http.StatusNoContent, send("demo", "order-paid", "e1", demo[0]))
	require.Equal(t, http.StatusNoContent, send("acme", "order-created", "e2", acme[0]))
	require.Equal(t, http.StatusNoContent, send("acme", "invoice", "e3", billing[0]), "the trigger's own reference")
	require.Equal(t, http.StatusUnauthorized, send("acme", "order-created", "e4", demo[0]), "another tenant's secret")
	require.Equal(t, http.StatusUnauthorized, send("acme", "invoice", "e5", acme[0]), "the tenant's default, not the trigger's reference")

	ds := rc.Deliveries()
	require.Len(t, ds, 3)
	require.Equal(t, []string{"demo", "acme", "acme"}, []string{ds[0].Tenant, ds[1].Tenant, ds[2].Tenant})
	require.NoError(t, signature.Verify(ds[1].Header, ds[1].Body, acme, 0, time.Now()), "the headers are kept")

	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	require.Len(t, lines, 5)
	for i, want := range []string{
		`^✓ \d\d:\d\d:\d\d demo/order-paid document.created orders/e1 `,
		`^✓ \d\d:\d\d:\d\d acme/order-created document.created orders/e2 `,
		`^✓ \d\d:\d\d:\d\d acme/invoice `,
		`^✗ \d\d:\d\d:\d\d acme/order-created rejected \(401\): signature \(tenant "acme"'s secret "default"\)`,
		`^✗ \d\d:\d\d:\d\d acme/invoice rejected \(401\): signature \(tenant "acme"'s secret "billing"\)`,
	} {
		require.Regexp(t, want, lines[i])
	}
}
