package authn_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/triggerflow/triggerflow/authn"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// clock is a settable time source; tests advance it instead of sleeping.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func newIssuer(t *testing.T, cfg authn.Config) (*authn.Issuer, *clock) {
	t.Helper()
	clk := &clock{now: time.Unix(1_700_000_000, 0)}
	if cfg.Now == nil {
		cfg.Now = clk.Now
	}
	iss, err := authn.NewIssuer(cfg)
	require.NoError(t, err)
	return iss, clk
}

// independentKeys decodes a JWKS by hand, without the package's code.
func independentKeys(t *testing.T, jwks []byte) map[string]ed25519.PublicKey {
	t.Helper()
	var set struct {
		Keys []map[string]string `json:"keys"`
	}
	require.NoError(t, json.Unmarshal(jwks, &set))
	out := map[string]ed25519.PublicKey{}
	for _, k := range set.Keys {
		require.Equal(t, "OKP", k["kty"])
		require.Equal(t, "Ed25519", k["crv"])
		require.Equal(t, "EdDSA", k["alg"])
		require.Equal(t, "sig", k["use"])
		x, err := base64.RawURLEncoding.DecodeString(k["x"])
		require.NoError(t, err)
		out[k["kid"]] = ed25519.PublicKey(x)
	}
	return out
}

func TestTokenClaimsVerifyIndependently(t *testing.T) {
	t.Parallel()
	iss, clk := newIssuer(t, authn.Config{})
	tok, err := iss.Token(t.Context(), "acme")
	require.NoError(t, err)

	jwks, err := iss.JWKS()
	require.NoError(t, err)
	keys := independentKeys(t, jwks)
	require.Len(t, keys, 1)

	claims := jwt.MapClaims{}
	parsed, err := jwt.ParseWithClaims(tok, claims, func(tk *jwt.Token) (any, error) {
		return keys[tk.Header["kid"].(string)], nil
	}, jwt.WithValidMethods([]string{"EdDSA"}), jwt.WithTimeFunc(clk.Now))
	require.NoError(t, err)
	require.Equal(t, iss.KeyID(), parsed.Header["kid"])
	require.Equal(t, "JWT", parsed.Header["typ"])

	require.Equal(t, "triggerflow", claims["iss"])
	require.Equal(t, "tenant:acme", claims["sub"])
	require.Equal(t, "acme", claims["tenant"])
	require.Equal(t, []any{"webhook"}, claims["aud"])
	require.EqualValues(t, clk.Now().Unix(), claims["iat"])
	require.EqualValues(t, clk.Now().Add(5*time.Minute).Unix(), claims["exp"])
	require.NotEmpty(t, claims["jti"])

	got, err := iss.Verify(tok, "acme")
	require.NoError(t, err)
	require.Equal(t, "acme", got.Tenant)
}

func TestCustomConfig(t *testing.T) {
	t.Parallel()
	_, key, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	iss, clk := newIssuer(t, authn.Config{Issuer: "tf-prod", Audience: "hooks", TTL: time.Hour, RefreshBefore: 10 * time.Minute, Key: key, KeyID: "k1"})
	tok, err := iss.Token(t.Context(), "acme")
	require.NoError(t, err)
	require.Equal(t, "k1", iss.KeyID())

	claims, err := iss.Verify(tok, "acme")
	require.NoError(t, err)
	require.Equal(t, "tf-prod", claims.Issuer)
	require.Equal(t, jwt.ClaimStrings{"hooks"}, claims.Audience)
	require.Equal(t, clk.Now().Add(time.Hour), claims.ExpiresAt.Time)

	// A verifier expecting the defaults refuses it.
	jwks, _ := iss.JWKS()
	v, err := authn.NewVerifier(jwks, authn.VerifierConfig{Now: clk.Now})
	require.NoError(t, err)
	_, err = v.Verify(tok, "acme")
	require.ErrorIs(t, err, authn.ErrInvalidToken)
	v, err = authn.NewVerifier(jwks, authn.VerifierConfig{Issuer: "tf-prod", Audience: "hooks", Now: clk.Now})
	require.NoError(t, err)
	_, err = v.Verify(tok, "acme")
	require.NoError(t, err)
}

func TestCaching(t *testing.T) {
	t.Parallel()
	iss, clk := newIssuer(t, authn.Config{})
	ctx := t.Context()
	first, err := iss.Token(ctx, "acme")
	require.NoError(t, err)

	other, err := iss.Token(ctx, "globex")
	require.NoError(t, err)
	require.NotEqual(t, first, other)

	clk.Add(4*time.Minute - time.Second) // just before exp - RefreshBefore
	again, err := iss.Token(ctx, "acme")
	require.NoError(t, err)
	require.Equal(t, first, again)

	clk.Add(time.Second) // exactly at exp - RefreshBefore
	fresh, err := iss.Token(ctx, "acme")
	require.NoError(t, err)
	require.NotEqual(t, first, fresh)
	claims, err := iss.Verify(fresh, "acme")
	require.NoError(t, err)
	require.Equal(t, clk.Now().Add(5*time.Minute), claims.ExpiresAt.Time)

	// The old token is still valid until its own expiry.
	_, err = iss.Verify(first, "acme")
	require.NoError(t, err)
}

func TestConcurrentTokenIsShared(t *testing.T) {
	t.Parallel()
	iss, _ := newIssuer(t, authn.Config{})
	const n = 32
	toks := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			tok, err := iss.Token(t.Context(), "acme")
			require.NoError(t, err)
			toks[i] = tok
		})
	}
	wg.Wait()
	for _, tok := range toks {
		require.Equal(t, toks[0], tok)
	}
}

func TestExpiry(t *testing.T) {
	t.Parallel()
	iss, clk := newIssuer(t, authn.Config{})
	tok, err := iss.Token(t.Context(), "acme")
	require.NoError(t, err)

	clk.Add(5*time.Minute + 29*time.Second) // within the default 30s leeway
	_, err = iss.Verify(tok, "acme")
	require.NoError(t, err)

	clk.Add(time.Second)
	_, err = iss.Verify(tok, "acme")
	require.ErrorIs(t, err, authn.ErrInvalidToken)
	require.ErrorIs(t, err, jwt.ErrTokenExpired)
}

func TestTenantIsolation(t *testing.T) {
	t.Parallel()
	iss, _ := newIssuer(t, authn.Config{})
	tokA, err := iss.Token(t.Context(), "tenant-a")
	require.NoError(t, err)
	_, err = iss.Verify(tokA, "tenant-b")
	require.ErrorIs(t, err, authn.ErrWrongTenant)
	_, err = iss.Verify(tokA, "")
	require.ErrorIs(t, err, authn.ErrWrongTenant)

	for _, bad := range []string{"", "a.b", "a b", "tenant:x", strings.Repeat("x", 129)} {
		_, err := iss.Token(t.Context(), bad)
		require.ErrorIs(t, err, authn.ErrInvalidTenant, bad)
	}
}

func TestForgeriesRefused(t *testing.T) {
	t.Parallel()
	iss, clk := newIssuer(t, authn.Config{})
	stranger, _ := newIssuer(t, authn.Config{Now: clk.Now})
	v := iss.Verifier()

	foreign, err := stranger.Token(t.Context(), "acme")
	require.NoError(t, err)
	_, err = v.Verify(foreign, "acme")
	require.ErrorIs(t, err, authn.ErrInvalidToken)

	claims := jwt.MapClaims{"iss": "triggerflow", "aud": "webhook", "sub": "tenant:acme", "tenant": "acme",
		"exp": clk.Now().Add(time.Minute).Unix()}
	none := jwt.NewWithClaims(jwt.SigningMethodNone, claims)
	none.Header["kid"] = iss.KeyID()
	noneTok, err := none.SignedString(jwt.UnsafeAllowNoneSignatureType)
	require.NoError(t, err)
	_, err = v.Verify(noneTok, "acme")
	require.ErrorIs(t, err, authn.ErrInvalidToken)

	// HMAC keyed with the public key: the classic algorithm confusion.
	jwks, _ := iss.JWKS()
	pub := independentKeys(t, jwks)[iss.KeyID()]
	hs := jwt.NewWithClaims(jwt.SigningMethodHS256, claims)
	hs.Header["kid"] = iss.KeyID()
	hsTok, err := hs.SignedString([]byte(pub))
	require.NoError(t, err)
	_, err = v.Verify(hsTok, "acme")
	require.ErrorIs(t, err, authn.ErrInvalidToken)

	tok, err := iss.Token(t.Context(), "acme")
	require.NoError(t, err)
	parts := strings.Split(tok, ".")
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	require.NoError(t, err)
	tampered := strings.Replace(string(payload), `"tenant":"acme"`, `"tenant":"evil"`, 1)
	parts[1] = base64.RawURLEncoding.EncodeToString([]byte(tampered))
	_, err = v.Verify(strings.Join(parts, "."), "evil")
	require.ErrorIs(t, err, authn.ErrInvalidToken)

	for _, junk := range []string{"", "a.b.c", "not a token"} {
		_, err = v.Verify(junk, "acme")
		require.ErrorIs(t, err, authn.ErrInvalidToken)
	}
}

func TestKeyRotation(t *testing.T) {
	t.Parallel()
	old, clk := newIssuer(t, authn.Config{})
	tok, err := old.Token(t.Context(), "acme")
	require.NoError(t, err)

	oldJWKS, _ := old.JWKS()
	oldPub := independentKeys(t, oldJWKS)[old.KeyID()]
	require.Equal(t, authn.Thumbprint(oldPub), old.KeyID())

	next, err := authn.NewIssuer(authn.Config{Now: clk.Now, PreviousKeys: []ed25519.PublicKey{oldPub}})
	require.NoError(t, err)
	jwks, _ := next.JWKS()
	require.Len(t, independentKeys(t, jwks), 2)
	_, err = next.Verify(tok, "acme")
	require.NoError(t, err, "tokens of the previous key verify during the overlap")

	newTok, err := next.Token(t.Context(), "acme")
	require.NoError(t, err)
	_, err = old.Verify(newTok, "acme")
	require.ErrorIs(t, err, authn.ErrInvalidToken)
}

func TestJWKSHandler(t *testing.T) {
	t.Parallel()
	iss, clk := newIssuer(t, authn.Config{})
	mux := http.NewServeMux()
	mux.Handle(authn.JWKSPath, iss.Handler())
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	resp, err := srv.Client().Get(srv.URL + authn.JWKSPath)
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "application/jwk-set+json", resp.Header.Get("Content-Type"))

	v, err := authn.NewVerifier(body, authn.VerifierConfig{Now: clk.Now})
	require.NoError(t, err)
	tok, err := iss.Token(t.Context(), "acme")
	require.NoError(t, err)
	_, err = v.Verify(tok, "acme")
	require.NoError(t, err)

	resp, err = srv.Client().Post(srv.URL+authn.JWKSPath, "text/plain", nil)
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	require.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)
}

func TestNewVerifierErrors(t *testing.T) {
	t.Parallel()
	for name, doc := range map[string]string{
		"not json":   "{",
		"empty":      `{"keys":[]}`,
		"only rsa":   `{"keys":[{"kty":"RSA","kid":"r","n":"x","e":"AQAB"}]}`,
		"no kid":     `{"keys":[{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}`,
		"short x":    `{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"k","x":"AAAA"}]}`,
		"bad base64": `{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"k","x":"!!"}]}`,
	} {
		_, err := authn.NewVerifier([]byte(doc), authn.VerifierConfig{})
		require.Error(t, err, name)
	}
}

func TestConfigValidation(t *testing.T) {
	t.Parallel()
	for name, cfg := range map[string]authn.Config{
		"negative ttl":       {TTL: -time.Second},
		"refresh beyond ttl": {TTL: time.Minute, RefreshBefore: time.Minute},
		"short key":          {Key: ed25519.PrivateKey("short")},
		"short previous":     {PreviousKeys: []ed25519.PublicKey{ed25519.PublicKey("x")}},
	} {
		_, err := authn.NewIssuer(cfg)
		require.Error(t, err, name)
	}
}

func TestKeyFiles(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "keys", "authn.pem")

	var wg sync.WaitGroup
	keys := make([]ed25519.PrivateKey, 4)
	for i := range keys {
		wg.Go(func() {
			k, err := authn.LoadOrCreateKey(path)
			require.NoError(t, err)
			keys[i] = k
		})
	}
	wg.Wait()
	for _, k := range keys {
		require.True(t, keys[0].Equal(k))
	}
	st, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm())
	entries, err := os.ReadDir(filepath.Dir(path))
	require.NoError(t, err)
	require.Len(t, entries, 1)

	loaded, err := authn.LoadKey(path)
	require.NoError(t, err)
	require.True(t, keys[0].Equal(loaded))

	// A key loaded from the file signs tokens that verify with its JWKS.
	iss, _ := newIssuer(t, authn.Config{Key: loaded})
	tok, err := iss.Token(t.Context(), "acme")
	require.NoError(t, err)
	_, err = iss.Verify(tok, "acme")
	require.NoError(t, err)

	_, err = authn.LoadKey(filepath.Join(t.TempDir(), "missing.pem"))
	require.ErrorIs(t, err, os.ErrNotExist)
	_, err = authn.ParseKey([]byte("garbage"), "x")
	require.ErrorContains(t, err, "PEM")
	rsaKey, err := rsa.GenerateKey(rand.Reader, 1024)
	require.NoError(t, err)
	der, err := x509.MarshalPKCS8PrivateKey(rsaKey)
	require.NoError(t, err)
	_, err = authn.ParseKey(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), "rsa.pem")
	require.ErrorContains(t, err, "want Ed25519")
}

func Example() {
	issuer, err := authn.NewIssuer(authn.Config{}) // dev: generated key
	if err != nil {
		panic(err)
	}
	// Worker: attach the tenant's token to a delivery.
	token, _ := issuer.Token(context.Background(), "acme")
	req, _ := http.NewRequest(http.MethodPost, "https://receiver.example/hook", nil)
	req.Header.Set("Authorization", "Bearer "+token)

	// Receiver: verify with the key set fetched from /.well-known/jwks.json.
	jwks, _ := issuer.JWKS()
	verifier, _ := authn.NewVerifier(jwks, authn.VerifierConfig{})
	claims, err := verifier.Verify(strings.TrimPrefix(req.Header.Get("Authorization"), "Bearer "), "acme")
	fmt.Println(claims.Subject, err)
	_, err = verifier.Verify(token, "globex")
	fmt.Println(err != nil)
	// Output:
	// tenant:acme <nil>
	// true
}

func BenchmarkTokenCached(b *testing.B) {
	iss, err := authn.NewIssuer(authn.Config{})
	require.NoError(b, err)
	for b.Loop() {
		if _, err := iss.Token(b.Context(), "acme"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerify(b *testing.B) {
	iss, err := authn.NewIssuer(authn.Config{})
	require.NoError(b, err)
	tok, err := iss.Token(b.Context(), "acme")
	require.NoError(b, err)
	v := iss.Verifier()
	for b.Loop() {
		if _, err := v.Verify(tok, "acme"); err != nil {
			b.Fatal(err)
		}
	}
}
