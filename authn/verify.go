package authn

import (
	"cmp"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// VerifierConfig configures a Verifier.
type VerifierConfig struct {
	// Issuer is the required iss. Defaults to "triggerflow".
	Issuer string
	// Audience is the required aud. Defaults to "webhook".
	Audience string
	// Leeway tolerates clock skew on exp. Defaults to 30s.
	Leeway time.Duration
	// Now is the clock. Defaults to time.Now.
	Now func() time.Time
}

// WithDefaults returns c with zero fields set to their defaults.
func (c VerifierConfig) WithDefaults() VerifierConfig {
	c.Issuer = cmp.Or(c.Issuer, "triggerflow")
	c.Audience = cmp.Or(c.Audience, "webhook")
	c.Leeway = cmp.Or(c.Leeway, 30*time.Second)
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Verifier checks tenant tokens on the receiving side, against a key set
// fetched from the issuer's JWKSPath.
type Verifier struct {
	cfg  VerifierConfig
	keys map[string]ed25519.PublicKey
}

// NewVerifier reads the Ed25519 keys of a JWKS document; keys of other
// types are ignored, keys without a kid are refused (tokens name theirs).
func NewVerifier(jwks []byte, cfg VerifierConfig) (*Verifier, error) {
	var set jwkSet
	if err := json.Unmarshal(jwks, &set); err != nil {
		return nil, fmt.Errorf("authn: reading key set: %w", err)
	}
	keys := map[string]ed25519.PublicKey{}
	for i, k := range set.Keys {
		if k.Kty != "OKP" || k.Crv != "Ed25519" {
			continue
		}
		if k.Kid == "" {
			return nil, fmt.Errorf("authn: key set entry %d has no kid", i)
		}
		x, err := base64.RawURLEncoding.DecodeString(k.X)
		if err != nil || len(x) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("authn: key set entry %d (kid %q): x is not a base64url Ed25519 public key", i, k.Kid)
		}
		keys[k.Kid] = ed25519.PublicKey(x)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("authn: key set has no Ed25519 key")
	}
	return &Verifier{cfg: cfg.WithDefaults(), keys: keys}, nil
}

// Verify checks token's signature, issuer, audience and expiry, and that
// it was issued for tenant. Errors wrap ErrInvalidToken or ErrWrongTenant.
func (v *Verifier) Verify(token, tenant string) (*Claims, error) {
	var claims Claims
	_, err := jwt.ParseWithClaims(token, &claims, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		key, ok := v.keys[kid]
		if !ok {
			return nil, fmt.Errorf("unknown key id %q", kid)
		}
		return key, nil
	},
		jwt.WithValidMethods([]string{jwt.SigningMethodEdDSA.Alg()}),
		jwt.WithIssuer(v.cfg.Issuer),
		jwt.WithAudience(v.cfg.Audience),
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(v.cfg.Leeway),
		jwt.WithTimeFunc(v.cfg.Now),
	)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidToken, err)
	}
	if claims.Tenant != tenant || claims.Subject != SubjectPrefix+tenant {
		return nil, fmt.Errorf("%w: token is for tenant %q, want %q", ErrWrongTenant, claims.Tenant, tenant)
	}
	return &claims, nil
}
