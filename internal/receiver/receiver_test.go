package receiver_test

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
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
		body := []byte(`{"type":"document.created","data":{"tenant":"acme","triggerId":"t","collection":"orders","docKey":"` + id + `"}}`)
		ts := time.Now()
		sig, err := signature.Sign(id, ts, body, secret)
		require.NoError(t, err)
		req := httptest.NewRequest(http.MethodPost, "/hooks", bytes.NewReader(body))
		req.Header.Set(signature.HeaderID, id)
		req.Header.Set(signature.HeaderTimestamp, strconv.FormatInt(ts.Unix(), 10))
		req.Header.Set(signature.HeaderSignature, sig)
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
