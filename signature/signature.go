// Package signature signs and verifies webhook deliveries per Standard
// Webhooks 1.0 (https://www.standardwebhooks.com): the webhook-id,
// webhook-timestamp and webhook-signature headers, where the signature is
// "v1,<base64 HMAC-SHA256(secret, id + "." + unixSeconds + "." + body)>".
//
// A [Secret] never prints its value: String, GoString, Format, LogValue and
// MarshalJSON all redact, so a secret that reaches a log line, an error or a
// Temporal payload by mistake does not leak. [Secret.Encode] is the one
// explicit way to get the "whsec_…" text back, for writing secret files.
package signature

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Header names defined by Standard Webhooks. http.Header canonicalises them
// on Set/Get, so they match whatever case the sender used.
const (
	HeaderID        = "webhook-id"
	HeaderTimestamp = "webhook-timestamp"
	HeaderSignature = "webhook-signature"
)

const (
	// SecretPrefix marks a symmetric Standard Webhooks secret.
	SecretPrefix = "whsec_"
	// MinSecretBytes and MaxSecretBytes bound the decoded key length, per
	// the spec.
	MinSecretBytes = 24
	MaxSecretBytes = 64
	// DefaultTolerance is the spec's recommended clock skew window for
	// receivers.
	DefaultTolerance = 5 * time.Minute

	// newSecretBytes is the size of generated keys: the HMAC-SHA256 block
	// is larger, but 256 bits is the hash's security level.
	newSecretBytes = 32
	// version is the only signature scheme we produce and accept; v1a
	// (ed25519) entries in a received header are skipped, not rejected.
	version  = "v1"
	redacted = SecretPrefix + "…redacted"
)

var (
	// ErrInvalidSecret: a secret string is not "whsec_" + base64 of 24–64
	// bytes. The wrapping error says which, never the value.
	ErrInvalidSecret = errors.New("signature: invalid secret")
	// ErrNoSecrets: Sign or Verify was given no secret.
	ErrNoSecrets = errors.New("signature: no secrets")
	// ErrInvalidID: a message id is empty or contains '.', which would make
	// the signed content ambiguous.
	ErrInvalidID = errors.New("signature: invalid message id")
	// ErrMissingHeaders: a required webhook-* header is absent or malformed.
	ErrMissingHeaders = errors.New("signature: missing or malformed webhook headers")
	// ErrTimestamp: webhook-timestamp is not an integer or lies outside the
	// tolerance window (replay protection).
	ErrTimestamp = errors.New("signature: timestamp invalid or outside tolerance")
	// ErrNoMatch: no v1 signature in the header matches any secret.
	ErrNoMatch = errors.New("signature: no matching signature")
)

// Secret is a symmetric signing key (the decoded bytes of "whsec_<base64>").
type Secret []byte

// ParseSecret decodes "whsec_<base64>" (standard alphabet, padding
// optional). Surrounding whitespace is ignored so lines read from files and
// env vars parse as-is.
func ParseSecret(s string) (Secret, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, fmt.Errorf("%w: empty", ErrInvalidSecret)
	}
	b64, ok := strings.CutPrefix(s, SecretPrefix)
	if !ok {
		return nil, fmt.Errorf("%w: missing %q prefix", ErrInvalidSecret, SecretPrefix)
	}
	key, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		key, err = base64.RawStdEncoding.DecodeString(b64)
	}
	if err != nil {
		// Deliberately not wrapping err: CorruptInputError is harmless, but
		// the rule "no secret material in errors" is easier to keep absolute.
		return nil, fmt.Errorf("%w: not valid standard base64 after %q", ErrInvalidSecret, SecretPrefix)
	}
	if len(key) < MinSecretBytes || len(key) > MaxSecretBytes {
		return nil, fmt.Errorf("%w: key is %d bytes, want %d–%d", ErrInvalidSecret, len(key), MinSecretBytes, MaxSecretBytes)
	}
	return Secret(key), nil
}

// NewSecret returns a random 32-byte secret.
func NewSecret() (Secret, error) {
	key := make([]byte, newSecretBytes)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("signature: generating secret: %w", err)
	}
	return Secret(key), nil
}

// Encode returns the secret in its "whsec_<base64>" wire form. It is the
// only method that reveals the value; use it to write secret files or hand
// the secret to a receiver, never for logging.
func (s Secret) Encode() string {
	return SecretPrefix + base64.StdEncoding.EncodeToString(s)
}

// String redacts the secret.
func (s Secret) String() string { return redacted }

// GoString redacts the secret under %#v.
func (s Secret) GoString() string { return redacted }

// Format redacts the secret under every verb; without it, %d or %x on a
// byte slice type would print the key.
func (s Secret) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(redacted)) }

// LogValue redacts the secret in slog output.
func (s Secret) LogValue() slog.Value { return slog.StringValue(redacted) }

// MarshalJSON redacts the secret, so it cannot ride along in JSON payloads
// (logs, Temporal activity inputs) by accident. There is deliberately no
// UnmarshalJSON: secrets are resolved where they are used, not serialised.
func (s Secret) MarshalJSON() ([]byte, error) { return []byte(strconv.Quote(redacted)), nil }

var _ slog.LogValuer = Secret(nil)

// Sign returns the webhook-signature header value: one "v1,<base64>" entry
// per secret, space-separated, so receivers holding either the old or the
// new secret accept the message during a rotation.
func Sign(msgID string, ts time.Time, body []byte, secrets ...Secret) (string, error) {
	if len(secrets) == 0 {
		return "", ErrNoSecrets
	}
	if err := checkID(msgID); err != nil {
		return "", err
	}
	prefix := signedPrefix(msgID, ts.Unix())
	var b strings.Builder
	for i, s := range secrets {
		if len(s) == 0 {
			return "", fmt.Errorf("%w: secret %d is empty", ErrInvalidSecret, i)
		}
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(version)
		b.WriteByte(',')
		b.WriteString(base64.StdEncoding.EncodeToString(mac(s, prefix, body)))
	}
	return b.String(), nil
}

// Verify checks the Standard Webhooks headers in h against body: the
// timestamp must be within ±tolerance of now (DefaultTolerance when
// tolerance <= 0) and at least one v1 signature must match one of secrets.
// Comparisons are constant-time. Entries of other versions (e.g. v1a) are
// ignored. Errors wrap ErrMissingHeaders, ErrTimestamp, ErrNoMatch or
// ErrNoSecrets.
func Verify(h http.Header, body []byte, secrets []Secret, tolerance time.Duration, now time.Time) error {
	if len(secrets) == 0 {
		return ErrNoSecrets
	}
	if tolerance <= 0 {
		tolerance = DefaultTolerance
	}
	id, tsText, sigs := h.Get(HeaderID), h.Get(HeaderTimestamp), h.Get(HeaderSignature)
	switch {
	case id == "":
		return fmt.Errorf("%w: %s", ErrMissingHeaders, HeaderID)
	case tsText == "":
		return fmt.Errorf("%w: %s", ErrMissingHeaders, HeaderTimestamp)
	case sigs == "":
		return fmt.Errorf("%w: %s", ErrMissingHeaders, HeaderSignature)
	}
	if strings.Contains(id, ".") {
		return fmt.Errorf("%w: %s contains '.'", ErrMissingHeaders, HeaderID)
	}
	ts, err := strconv.ParseInt(tsText, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: %s is not unix seconds", ErrTimestamp, HeaderTimestamp)
	}
	// Compare in seconds, not time.Duration: a hostile timestamp near the
	// int64 limits would overflow a nanosecond difference.
	skew := now.Unix() - ts
	limit := int64(tolerance / time.Second)
	if skew > limit || skew < -limit {
		return fmt.Errorf("%w: %s is %ds from now, tolerance %s", ErrTimestamp, HeaderTimestamp, skew, tolerance)
	}

	prefix := signedPrefix(id, ts)
	expected := make([][]byte, 0, len(secrets))
	for _, s := range secrets {
		if len(s) == 0 {
			continue
		}
		expected = append(expected, mac(s, prefix, body))
	}
	for entry := range strings.FieldsSeq(sigs) {
		v, sig, ok := strings.Cut(entry, ",")
		if !ok || v != version {
			continue
		}
		got, err := base64.StdEncoding.DecodeString(sig)
		if err != nil || len(got) != sha256.Size {
			continue
		}
		for _, want := range expected {
			if hmac.Equal(got, want) {
				return nil
			}
		}
	}
	return ErrNoMatch
}

func checkID(id string) error {
	if id == "" {
		return fmt.Errorf("%w: empty", ErrInvalidID)
	}
	if strings.Contains(id, ".") {
		return fmt.Errorf("%w: contains '.'", ErrInvalidID)
	}
	return nil
}

// signedPrefix is the part of the signed content before the body. Using the
// parsed integer (not the header text) on verify means "0123" and "123"
// sign identically, matching the reference libraries.
func signedPrefix(id string, unix int64) []byte {
	return []byte(id + "." + strconv.FormatInt(unix, 10) + ".")
}

func mac(key Secret, prefix, body []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(prefix)
	m.Write(body)
	return m.Sum(nil)
}
