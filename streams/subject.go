package streams

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/triggerflow/triggerflow/trigger"
)

// MaxSubjectBytes is the subject length the design allows. NATS itself takes
// longer subjects, but every subject we build stays within this bound so
// that subjects remain cheap to index and safe for every client library.
const MaxSubjectBytes = 1024

// hashTokenLen is the length of the hex SHA-256 prefix that replaces a docKey
// token when the plain subject would be too long: 128 bits, so accidental
// collisions are negligible, yet consumers still detect and handle them.
const hashTokenLen = 32

// Codec errors. Each is wrapped with the offending value.
var (
	ErrEmptyDocKey     = errors.New("docKey is empty")
	ErrInvalidDocKey   = errors.New("docKey token is not base64url without padding")
	ErrInvalidToken    = errors.New("invalid subject token")
	ErrInvalidSubject  = errors.New("invalid subject")
	ErrSubjectTooLong  = errors.New("subject exceeds 1024 bytes even with a hashed docKey")
	ErrInvalidStream   = errors.New("invalid stream name")
	ErrInvalidTenant   = errors.New("invalid tenant")
	ErrInvalidCollPath = errors.New("invalid collection")
)

var docKeyEncoding = base64.RawURLEncoding

// EncodeDocKey returns docKey as base64url without padding: any byte string
// becomes a token made only of [A-Za-z0-9_-], which NATS treats literally.
func EncodeDocKey(docKey string) (string, error) {
	if docKey == "" {
		return "", ErrEmptyDocKey
	}
	return docKeyEncoding.EncodeToString([]byte(docKey)), nil
}

// DecodeDocKey reverses EncodeDocKey. It rejects padding, the standard
// alphabet and non-canonical encodings so that each docKey has exactly one
// token.
func DecodeDocKey(token string) (string, error) {
	if token == "" {
		return "", ErrEmptyDocKey
	}
	b, err := docKeyEncoding.Strict().DecodeString(token)
	if err != nil {
		return "", fmt.Errorf("%w: %q: %v", ErrInvalidDocKey, truncateToken(token), err)
	}
	return string(b), nil
}

// HashToken is the docKey token used when the plain subject is too long: the
// first 32 hex characters of SHA-256 over the encoded docKey.
func HashToken(encodedDocKey string) string {
	sum := sha256.Sum256([]byte(encodedDocKey))
	return hex.EncodeToString(sum[:])[:hashTokenLen]
}

// Subject is a built subject and whether its docKey token is a hash.
type Subject struct {
	// Name is the full NATS subject.
	Name string
	// Hashed is true when the docKey token is HashToken of the encoded key;
	// consumers must then take the docKey from the payload.
	Hashed bool
}

// BuildSubject returns <stream>.<tenant>.<collection tokens>.<docKey token>.
//
// The collection's '/'-separated segments become one subject token each, so
// "chats/42/members" in tenant "acme" lands on TRIGGERS.acme.chats.42.members.<key>
// and consumers can filter on collection prefixes with NATS wildcards. The
// tenant and segments must be non-empty and use only letters, digits, '-' and
// '_' (what trigger validation allows), so no token can hold '.', '*', '>' or
// whitespace. The docKey is base64url-encoded; if the result would exceed
// MaxSubjectBytes, the docKey token becomes HashToken and Hashed is set.
func BuildSubject(stream, tenant, collection, docKey string) (Subject, error) {
	if !trigger.IsToken(stream) {
		return Subject{}, fmt.Errorf("%w: %q", ErrInvalidStream, truncateToken(stream))
	}
	if !trigger.IsToken(tenant) {
		return Subject{}, fmt.Errorf("%w: %q", ErrInvalidTenant, truncateToken(tenant))
	}
	collTokens, err := CollectionTokens(collection)
	if err != nil {
		return Subject{}, err
	}
	enc, err := EncodeDocKey(docKey)
	if err != nil {
		return Subject{}, err
	}
	prefix := stream + "." + tenant + "." + collTokens + "."
	if len(prefix)+len(enc) <= MaxSubjectBytes {
		return Subject{Name: prefix + enc}, nil
	}
	if len(prefix)+hashTokenLen > MaxSubjectBytes {
		return Subject{}, fmt.Errorf("%w: tenant %q, collection %q", ErrSubjectTooLong, truncateToken(tenant), truncateToken(collection))
	}
	return Subject{Name: prefix + HashToken(enc), Hashed: true}, nil
}

// ParsedSubject is a subject split into its parts. DocKeyToken is the last
// token as it stands: an encoded docKey, or a hash when the publisher fell
// back (which only the payload's subjectHashed flag can tell).
type ParsedSubject struct {
	Stream      string
	Tenant      string
	Collection  string
	DocKeyToken string
}

// ParseSubject splits a subject built by BuildSubject. It checks shape and
// token safety, not whether the docKey token decodes.
func ParseSubject(subject string) (ParsedSubject, error) {
	if len(subject) > MaxSubjectBytes {
		return ParsedSubject{}, fmt.Errorf("%w: longer than %d bytes", ErrInvalidSubject, MaxSubjectBytes)
	}
	toks := strings.Split(subject, ".")
	if len(toks) < 4 {
		return ParsedSubject{}, fmt.Errorf("%w: %q: want <stream>.<tenant>.<collection>.<docKey>", ErrInvalidSubject, truncateToken(subject))
	}
	for _, tok := range toks {
		if !trigger.IsToken(tok) {
			return ParsedSubject{}, fmt.Errorf("%w: %q in subject %q", ErrInvalidToken, truncateToken(tok), truncateToken(subject))
		}
	}
	return ParsedSubject{
		Stream:      toks[0],
		Tenant:      toks[1],
		Collection:  strings.Join(toks[2:len(toks)-1], "/"),
		DocKeyToken: toks[len(toks)-1],
	}, nil
}

// CollectionTokens returns collection as the dot-separated subject tokens
// it becomes, or an error wrapping ErrInvalidCollPath.
func CollectionTokens(collection string) (string, error) {
	if collection == "" {
		return "", fmt.Errorf("%w: empty", ErrInvalidCollPath)
	}
	for seg := range strings.SplitSeq(collection, "/") {
		if !trigger.IsToken(seg) {
			return "", fmt.Errorf("%w: %q: segments must be non-empty and use only letters, digits, '-' and '_'", ErrInvalidCollPath, truncateToken(collection))
		}
	}
	return strings.ReplaceAll(collection, "/", "."), nil
}

// truncateToken keeps error messages readable when the input is huge.
func truncateToken(s string) string {
	const max = 64
	if len(s) <= max {
		return s
	}
	return s[:max] + "…"
}
