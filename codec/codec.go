// Package codec encrypts what Triggerflow puts in Temporal's history: every
// payload (documents, headers, URLs, signal and activity arguments and
// results, memo and summaries) and, through the failure converter, failure
// messages and stack traces.
//
// Codec is a go.temporal.io/sdk/converter.PayloadCodec using AES-256-GCM
// with a key ring: one active key encrypts, every key of the ring decrypts,
// so keys rotate by adding a new key, making it active, and removing the
// old one only once no history that needs it is read any more. An
// encrypted payload carries its key id in its metadata:
//
//	encoding:          binary/encrypted
//	encryption-key-id: <key id>
//	encryption-cipher: AES-256-GCM
//
// and as data a random 12-byte nonce followed by the sealed original
// payload (its metadata and data, protobuf-encoded). The key id is bound as
// additional authenticated data, so a payload relabelled with another key
// id does not decrypt; the original metadata is inside the ciphertext, so
// it is both hidden and authenticated.
//
// Decoding passes payloads that are not encrypted through unchanged, so
// histories recorded before the codec was turned on still replay. A payload
// encrypted with a key that is not in the ring fails with an
// *UnknownKeyError (errors.Is ErrUnknownKey) naming the key id.
//
// Keys are read from a key file and configuration entries in the format of
// ParseKeys ("id=base64", see LoadKeys); NewHandler serves Temporal's codec
// server protocol for the Temporal UI and CLI.
package codec

import (
	"cmp"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	"github.com/triggerflow/triggerflow/internal/keyfile"
	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/converter"
	"google.golang.org/protobuf/proto"
)

// Metadata of an encrypted payload.
const (
	// MetadataEncoding is the metadata key Temporal's converters read the
	// encoding from (converter.MetadataEncoding).
	MetadataEncoding = converter.MetadataEncoding
	// EncodingEncrypted marks an encrypted payload, as in Temporal's
	// encryption samples.
	EncodingEncrypted = "binary/encrypted"
	// MetadataKeyID holds the id of the key that encrypted the payload.
	MetadataKeyID = "encryption-key-id"
	// MetadataCipher names the cipher; Cipher is the only one.
	MetadataCipher = "encryption-cipher"
	// Cipher is the value of MetadataCipher.
	Cipher = "AES-256-GCM"
)

// KeySize is the length of a key: AES-256.
const KeySize = 32

// nonceSize is GCM's standard nonce length; tagSize its tag's.
const (
	nonceSize = 12
	tagSize   = 16
)

// aadPrefix starts the additional authenticated data, which ends with the
// key id: a version for the format, and the binding of the id.
const aadPrefix = "triggerflow/codec/v1 " + Cipher + " key="

var (
	// ErrInvalidConfig is wrapped by New's errors.
	ErrInvalidConfig = errors.New("codec: invalid configuration")
	// ErrUnknownKey is matched (errors.Is) by an *UnknownKeyError.
	ErrUnknownKey = errors.New("codec: unknown encryption key")
	// ErrDecrypt: an encrypted payload did not authenticate. Its ciphertext
	// or key id was altered, or the ring holds a different key under the
	// id that encrypted it.
	ErrDecrypt = errors.New("codec: payload does not decrypt")
	// ErrMalformed: a payload marked encrypted is not in this codec's
	// format (no key id, another cipher, too short, or not a payload
	// inside).
	ErrMalformed = errors.New("codec: malformed encrypted payload")
)

// UnknownKeyError is a payload encrypted with a key the ring does not hold:
// a key removed too early, or a replica configured with another ring.
type UnknownKeyError struct {
	// KeyID is the key id the payload names.
	KeyID string
	// Known are the ids the ring holds, sorted.
	Known []string
}

func (e *UnknownKeyError) Error() string {
	return fmt.Sprintf("codec: payload encrypted with key %q, which is not in the key ring (it holds %s); add that key to the ring to read it",
		e.KeyID, strings.Join(e.Known, ", "))
}

// Is makes errors.Is(err, ErrUnknownKey) true.
func (e *UnknownKeyError) Is(target error) bool { return target == ErrUnknownKey }

// Config configures a Codec.
type Config struct {
	// Keys is the key ring: key id → 32-byte AES-256 key. Every key
	// decrypts. At least one is required. An id is 1 to 64 letters,
	// digits, '.', '_' or '-'.
	Keys map[string][]byte
	// ActiveKey is the id of the key that encrypts; it must be in Keys.
	// Required.
	ActiveKey string
	// Rand is where nonces come from. Defaults to crypto/rand.Reader.
	Rand io.Reader
}

// Codec encrypts and decrypts payloads; see the package documentation. It
// is safe for concurrent use.
type Codec struct {
	active string
	aeads  map[string]cipher.AEAD
	known  []string
	rand   io.Reader
}

var _ converter.PayloadCodec = (*Codec)(nil)

// New checks cfg and returns its Codec. Errors wrap ErrInvalidConfig and
// never contain key material.
func New(cfg Config) (*Codec, error) {
	if len(cfg.Keys) == 0 {
		return nil, fmt.Errorf("%w: the key ring is empty", ErrInvalidConfig)
	}
	c := &Codec{active: cfg.ActiveKey, aeads: make(map[string]cipher.AEAD, len(cfg.Keys)), rand: cfg.Rand}
	c.rand = cmp.Or(c.rand, rand.Reader)
	for _, id := range slices.Sorted(maps.Keys(cfg.Keys)) {
		if err := CheckKeyID(id); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
		}
		aead, err := newAEAD(cfg.Keys[id])
		if err != nil {
			return nil, fmt.Errorf("%w: key %q: %w", ErrInvalidConfig, id, err)
		}
		c.aeads[id] = aead
		c.known = append(c.known, id)
	}
	switch {
	case cfg.ActiveKey == "":
		return nil, fmt.Errorf("%w: no active key: name the key that encrypts (one of %s)", ErrInvalidConfig, strings.Join(c.known, ", "))
	case c.aeads[cfg.ActiveKey] == nil:
		return nil, fmt.Errorf("%w: the active key %q is not in the key ring (it holds %s)", ErrInvalidConfig, cfg.ActiveKey, strings.Join(c.known, ", "))
	}
	return c, nil
}

func newAEAD(key []byte) (cipher.AEAD, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("is %d bytes long; AES-256 needs %d", len(key), KeySize)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// CheckKeyID reports whether id can name a key: 1 to 64 letters, digits,
// '.', '_' or '-'.
func CheckKeyID(id string) error { return keyfile.CheckID(id) }

// ActiveKey is the id of the key that encrypts.
func (c *Codec) ActiveKey() string { return c.active }

// KeyIDs are the ids of the ring, sorted.
func (c *Codec) KeyIDs() []string { return slices.Clone(c.known) }

func aad(keyID string) []byte { return []byte(aadPrefix + keyID) }

// Encode encrypts every payload with the active key. It does not change
// its arguments; a nil payload stays nil.
func (c *Codec) Encode(payloads []*commonpb.Payload) ([]*commonpb.Payload, error) {
	aead := c.aeads[c.active]
	out := make([]*commonpb.Payload, len(payloads))
	for i, p := range payloads {
		if p == nil {
			continue
		}
		plain, err := proto.Marshal(p)
		if err != nil {
			return payloads, fmt.Errorf("codec: encode payload %d: %w", i, err)
		}
		data := make([]byte, nonceSize, nonceSize+len(plain)+tagSize)
		if _, err := io.ReadFull(c.rand, data); err != nil {
			return payloads, fmt.Errorf("codec: encode payload %d: nonce: %w", i, err)
		}
		out[i] = &commonpb.Payload{
			Metadata: map[string][]byte{
				MetadataEncoding: []byte(EncodingEncrypted),
				MetadataKeyID:    []byte(c.active),
				MetadataCipher:   []byte(Cipher),
			},
			Data: aead.Seal(data, data, plain, aad(c.active)),
		}
	}
	return out, nil
}

// Decode decrypts every encrypted payload with the key its metadata names
// and passes the others through unchanged. It does not change its
// arguments. A payload whose key is not in the ring fails with an
// *UnknownKeyError; one that does not authenticate with ErrDecrypt; one
// marked encrypted but not in this format with ErrMalformed.
func (c *Codec) Decode(payloads []*commonpb.Payload) ([]*commonpb.Payload, error) {
	out := make([]*commonpb.Payload, len(payloads))
	for i, p := range payloads {
		if string(p.GetMetadata()[MetadataEncoding]) != EncodingEncrypted {
			out[i] = p
			continue
		}
		d, err := c.decrypt(p)
		if err != nil {
			return payloads, err
		}
		out[i] = d
	}
	return out, nil
}

func (c *Codec) decrypt(p *commonpb.Payload) (*commonpb.Payload, error) {
	md := p.GetMetadata()
	rawID, ok := md[MetadataKeyID]
	if !ok {
		return nil, fmt.Errorf("%w: no %s metadata", ErrMalformed, MetadataKeyID)
	}
	id := string(rawID)
	if cph, ok := md[MetadataCipher]; ok && string(cph) != Cipher {
		return nil, fmt.Errorf("%w: key %q: cipher %q, want %s", ErrMalformed, shorten(id), shorten(string(cph)), Cipher)
	}
	aead := c.aeads[id]
	if aead == nil {
		return nil, &UnknownKeyError{KeyID: shorten(id), Known: c.KeyIDs()}
	}
	data := p.GetData()
	if len(data) < nonceSize+tagSize {
		return nil, fmt.Errorf("%w: key %q: %d bytes of data, less than a nonce and a tag", ErrMalformed, id, len(data))
	}
	plain, err := aead.Open(nil, data[:nonceSize], data[nonceSize:], aad(id))
	if err != nil {
		return nil, fmt.Errorf("%w: encrypted with key %q: the ciphertext or its key id was altered, or the ring's key %q is not the one that encrypted it", ErrDecrypt, id, id)
	}
	out := &commonpb.Payload{}
	if err := proto.Unmarshal(plain, out); err != nil {
		return nil, fmt.Errorf("%w: key %q: the plaintext is not a payload: %w", ErrMalformed, id, err)
	}
	return out, nil
}

// shorten bounds an id read from a payload before it goes into an error:
// the payload may be anything.
func shorten(s string) string {
	const limit = 80
	if len(s) > limit {
		return s[:limit] + "…"
	}
	return s
}
