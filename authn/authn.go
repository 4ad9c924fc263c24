// Package authn mints the per-tenant system token the worker sends with
// each webhook (as "Authorization: Bearer <token>"), and verifies it on the
// receiving side.
//
// The token is a JWT signed with Ed25519 (alg "EdDSA"), so receivers verify
// it with the public key set served at JWKSPath and never hold a secret
// that could mint tokens. Claims:
//
//	iss    Config.Issuer ("triggerflow")
//	sub    "tenant:<tenant>"
//	aud    [Config.Audience] (["webhook"])
//	tenant "<tenant>"
//	iat    minting time
//	exp    iat + Config.TTL
//	jti    random, unique per token
//
// It authenticates the platform and says which tenant a delivery is for;
// the Standard Webhooks signature (package signature) authenticates the
// delivery itself.
package authn

import (
	"cmp"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// JWKSPath is where receivers expect the key set (RFC 8615 well-known).
const JWKSPath = "/.well-known/jwks.json"

// SubjectPrefix starts the sub claim; the rest is the tenant.
const SubjectPrefix = "tenant:"

var (
	// ErrInvalidTenant: the tenant is empty or outside letters, digits,
	// '-' and '_' (at most 128).
	ErrInvalidTenant = errors.New("authn: invalid tenant")
	// ErrInvalidToken: the token is malformed, expired, signed by an
	// unknown key or for another issuer or audience.
	ErrInvalidToken = errors.New("authn: invalid token")
	// ErrWrongTenant: the token is valid but was issued for another tenant.
	ErrWrongTenant = errors.New("authn: token is for another tenant")
)

// Claims are the token's claims.
type Claims struct {
	Tenant string `json:"tenant"`
	jwt.RegisteredClaims
}

// Config configures an Issuer.
type Config struct {
	// Issuer is the iss claim. Defaults to "triggerflow".
	Issuer string
	// Audience is the aud claim. Defaults to "webhook".
	Audience string
	// TTL is a token's lifetime. Defaults to 5m.
	TTL time.Duration
	// RefreshBefore is how long before expiry a cached token is replaced,
	// so a token handed out is good for at least this long (one delivery
	// attempt plus clock skew). Defaults to 1m; must be less than TTL.
	RefreshBefore time.Duration
	// Key signs tokens. Defaults to a key generated at startup, which is
	// fine for dev but changes the key set on every restart; deployments
	// load a persistent key with LoadKey.
	Key ed25519.PrivateKey
	// KeyID is the kid header and JWK member. Defaults to the RFC 7638
	// thumbprint of the public key.
	KeyID string
	// PreviousKeys are still published in the key set, but not used to
	// sign, so tokens minted before a key rotation keep verifying until
	// they expire. Their key ids are their thumbprints.
	PreviousKeys []ed25519.PublicKey
	// Now is the clock. Defaults to time.Now.
	Now func() time.Time
}

// WithDefaults returns c with zero fields set to their defaults (a nil Key
// stays nil; NewIssuer generates it).
func (c Config) WithDefaults() Config {
	c.Issuer = cmp.Or(c.Issuer, "triggerflow")
	c.Audience = cmp.Or(c.Audience, "webhook")
	c.TTL = cmp.Or(c.TTL, 5*time.Minute)
	c.RefreshBefore = cmp.Or(c.RefreshBefore, time.Minute)
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// ErrInvalidConfig is wrapped by every Validate error.
var ErrInvalidConfig = errors.New("authn: invalid config")

// Validate reports every unusable field.
func (c Config) Validate() error {
	var errs []error
	if c.TTL <= 0 {
		errs = append(errs, fmt.Errorf("TTL %s must be positive", c.TTL))
	}
	if c.RefreshBefore < 0 || c.RefreshBefore >= c.TTL {
		errs = append(errs, fmt.Errorf("RefreshBefore %s must be at least 0 and less than TTL %s", c.RefreshBefore, c.TTL))
	}
	if c.Key != nil && len(c.Key) != ed25519.PrivateKeySize {
		errs = append(errs, fmt.Errorf("key is %d bytes, want an ed25519 private key of %d", len(c.Key), ed25519.PrivateKeySize))
	}
	for i, k := range c.PreviousKeys {
		if len(k) != ed25519.PublicKeySize {
			errs = append(errs, fmt.Errorf("PreviousKeys[%d] is %d bytes, want an ed25519 public key of %d", i, len(k), ed25519.PublicKeySize))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	return nil
}

// Issuer mints and caches per-tenant tokens. It is safe for concurrent use.
type Issuer struct {
	cfg  Config
	kid  string
	jwks []byte

	mu    sync.Mutex
	cache map[string]cachedToken
}

type cachedToken struct {
	token   string
	refresh time.Time // when to mint a new one
}

// maxCached bounds the token cache; past it, tokens due for refresh are
// dropped. Tenants are few, so this is a leak guard, not a tuning knob.
const maxCached = 4096

// NewIssuer fills cfg's defaults, validates it and returns an Issuer.
func NewIssuer(cfg Config) (*Issuer, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Key == nil {
		_, key, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("authn: generating key: %w", err)
		}
		cfg.Key = key
	}
	pub := cfg.Key.Public().(ed25519.PublicKey)
	if cfg.KeyID == "" {
		cfg.KeyID = Thumbprint(pub)
	}
	set := jwkSet{Keys: []jwk{newJWK(pub, cfg.KeyID)}}
	for _, k := range cfg.PreviousKeys {
		set.Keys = append(set.Keys, newJWK(k, Thumbprint(k)))
	}
	jwks, err := json.Marshal(set)
	if err != nil {
		return nil, fmt.Errorf("authn: encoding key set: %w", err)
	}
	return &Issuer{cfg: cfg, kid: cfg.KeyID, jwks: jwks, cache: map[string]cachedToken{}}, nil
}

// KeyID is the kid of the signing key.
func (i *Issuer) KeyID() string { return i.kid }

// Token returns tenant's token, minting one when there is none cached or
// the cached one is within RefreshBefore of expiry.
func (i *Issuer) Token(ctx context.Context, tenant string) (string, error) {
	if err := checkTenant(tenant); err != nil {
		return "", err
	}
	if err := ctx.Err(); err != nil {
		return "", err
	}
	now := i.cfg.Now()
	// Minting is one ed25519 signature (tens of µs), so holding the lock
	// while doing it is simpler than deduplicating concurrent mints.
	i.mu.Lock()
	defer i.mu.Unlock()
	if c, ok := i.cache[tenant]; ok && now.Before(c.refresh) {
		return c.token, nil
	}
	token, exp, err := i.mint(tenant, now)
	if err != nil {
		return "", err
	}
	if len(i.cache) >= maxCached {
		for t, c := range i.cache {
			if !now.Before(c.refresh) {
				delete(i.cache, t)
			}
		}
	}
	i.cache[tenant] = cachedToken{token: token, refresh: exp.Add(-i.cfg.RefreshBefore)}
	return token, nil
}

func (i *Issuer) mint(tenant string, now time.Time) (string, time.Time, error) {
	var jti [16]byte
	if _, err := rand.Read(jti[:]); err != nil {
		return "", time.Time{}, fmt.Errorf("authn: generating jti: %w", err)
	}
	// JWT times are whole seconds; truncating keeps exp-iat exactly TTL.
	iat := now.Truncate(time.Second)
	exp := iat.Add(i.cfg.TTL)
	claims := Claims{
		Tenant: tenant,
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    i.cfg.Issuer,
			Subject:   SubjectPrefix + tenant,
			Audience:  jwt.ClaimStrings{i.cfg.Audience},
			IssuedAt:  jwt.NewNumericDate(iat),
			ExpiresAt: jwt.NewNumericDate(exp),
			ID:        base64.RawURLEncoding.EncodeToString(jti[:]),
		},
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claims)
	tok.Header["kid"] = i.kid
	signed, err := tok.SignedString(i.cfg.Key)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("authn: signing token for tenant %q: %w", tenant, err)
	}
	return signed, exp, nil
}

// JWKS returns the public key set (RFC 7517) that verifies the tokens.
func (i *Issuer) JWKS() ([]byte, error) { return append([]byte(nil), i.jwks...), nil }

// Handler serves the key set; mount it at JWKSPath.
func (i *Issuer) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		w.Header().Set("Content-Type", "application/jwk-set+json")
		// Receivers may cache for a while, but not past a rotation's
		// overlap: a new key must be fetched before old tokens expire.
		w.Header().Set("Cache-Control", "public, max-age=300")
		if r.Method == http.MethodHead {
			return
		}
		_, _ = w.Write(i.jwks)
	})
}

// Verifier returns a Verifier for this issuer's keys, issuer and audience.
func (i *Issuer) Verifier() *Verifier {
	v, err := NewVerifier(i.jwks, VerifierConfig{Issuer: i.cfg.Issuer, Audience: i.cfg.Audience, Now: i.cfg.Now})
	if err != nil {
		// The set was built by NewIssuer; failing to read it back is a bug.
		panic(fmt.Sprintf("authn: issuer key set does not parse: %v", err))
	}
	return v
}

// Verify checks token as tenant's, with this issuer's keys.
func (i *Issuer) Verify(token, tenant string) (*Claims, error) {
	return i.Verifier().Verify(token, tenant)
}

func checkTenant(tenant string) error {
	if tenant == "" || len(tenant) > 128 {
		return fmt.Errorf("%w: %q must be 1 to 128 characters", ErrInvalidTenant, tenant)
	}
	for _, c := range []byte(tenant) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return fmt.Errorf("%w: %q contains %q: only letters, digits, '-' and '_' are allowed", ErrInvalidTenant, tenant, c)
		}
	}
	return nil
}

// jwk is an OKP public key (RFC 8037).
type jwk struct {
	Kty string `json:"kty"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Kid string `json:"kid,omitempty"`
	Use string `json:"use,omitempty"`
	Alg string `json:"alg,omitempty"`
}

type jwkSet struct {
	Keys []jwk `json:"keys"`
}

func newJWK(pub ed25519.PublicKey, kid string) jwk {
	return jwk{Kty: "OKP", Crv: "Ed25519", X: base64.RawURLEncoding.EncodeToString(pub), Kid: kid, Use: "sig", Alg: "EdDSA"}
}

// Thumbprint is the RFC 7638 JWK thumbprint (base64url SHA-256) of pub,
// the default key id.
func Thumbprint(pub ed25519.PublicKey) string {
	// RFC 7638: required members only, lexicographic order, no spaces.
	canon := `{"crv":"Ed25519","kty":"OKP","x":"` + base64.RawURLEncoding.EncodeToString(pub) + `"}`
	sum := sha256.Sum256([]byte(canon))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}
