// Package tasksig authenticates delivery tasks. The watcher signs each task
// it publishes (Ed25519) over every field that decides where and how it is
// delivered; ingest and the worker verify the signature before acting on a
// task, so someone who can publish on the task stream or signal a delivery
// workflow cannot have the worker sign a body with a tenant's secret or
// send its token to a URL of their choosing.
//
// The signed message covers the tenant, trigger id and version, collection
// and its pattern, docKey, event id, event type, position and commit time,
// URL, headers, secret reference, retry policy, timeout, failure mode,
// whether the subject is hashed, and SHA-256 digests of the document
// images. It leaves out only Redrive, the dead-letter sequence an operator's
// redrive sets: a redriven task is the same delivery, so the watcher's
// signature still covers it and `dlq redrive` needs no key of its own.
//
// A task names the key that signed it (Auth.KeyID). Verifiers accept every
// key of their ring, so keys rotate: add the new public key to every
// verifier, switch the watcher to the new private key, and remove the old
// public key once no task signed with it can come back (the task stream's
// and the dead-letter stream's retention).
package tasksig

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"time"

	"github.com/triggerflow/triggerflow/internal/keyfile"
	"github.com/triggerflow/triggerflow/trigger"
)

// Errors. Every verification failure wraps ErrUnauthenticated.
var (
	ErrUnauthenticated = errors.New("task not authenticated")
	ErrInvalidKey      = errors.New("tasksig: invalid key")
)

// Signer signs tasks with one private key.
type Signer struct {
	id  string
	key ed25519.PrivateKey
}

// NewSigner returns a signer that signs with key under the key id id.
func NewSigner(id string, key ed25519.PrivateKey) (*Signer, error) {
	if err := checkID(id); err != nil {
		return nil, err
	}
	if len(key) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("%w: key %q is %d bytes, want an Ed25519 private key", ErrInvalidKey, id, len(key))
	}
	return &Signer{id: id, key: key}, nil
}

// KeyID returns the id tasks are signed under.
func (s *Signer) KeyID() string { return s.id }

// Sign sets t.Auth to a signature over t's delivery fields.
func (s *Signer) Sign(t *trigger.DeliveryTask) {
	sig := ed25519.Sign(s.key, Message(t))
	t.Auth = &trigger.TaskAuth{KeyID: s.id, Sig: base64.RawURLEncoding.EncodeToString(sig)}
}

// Verifier checks task signatures against a ring of public keys.
type Verifier struct {
	keys map[string]ed25519.PublicKey
}

// NewVerifier returns a verifier accepting the given keys, by key id.
func NewVerifier(keys map[string]ed25519.PublicKey) (*Verifier, error) {
	if len(keys) == 0 {
		return nil, fmt.Errorf("%w: no verification keys", ErrInvalidKey)
	}
	for id, k := range keys {
		if err := checkID(id); err != nil {
			return nil, err
		}
		if len(k) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("%w: key %q is %d bytes, want an Ed25519 public key", ErrInvalidKey, id, len(k))
		}
	}
	return &Verifier{keys: maps.Clone(keys)}, nil
}

// KeyIDs returns the ids of the accepted keys, sorted.
func (v *Verifier) KeyIDs() []string { return slices.Sorted(maps.Keys(v.keys)) }

// Verify returns nil when t carries a valid signature by a key of the
// ring, else an error wrapping ErrUnauthenticated that says why.
func (v *Verifier) Verify(t *trigger.DeliveryTask) error {
	if t.Auth == nil || t.Auth.KeyID == "" || t.Auth.Sig == "" {
		return fmt.Errorf("%w: the task is not signed", ErrUnauthenticated)
	}
	key, ok := v.keys[t.Auth.KeyID]
	if !ok {
		return fmt.Errorf("%w: signed with key %q, which is not among the verification keys (%v)", ErrUnauthenticated, t.Auth.KeyID, v.KeyIDs())
	}
	sig, err := base64.RawURLEncoding.DecodeString(t.Auth.Sig)
	if err != nil || len(sig) != ed25519.SignatureSize {
		return fmt.Errorf("%w: the signature is not %d bytes of base64url", ErrUnauthenticated, ed25519.SignatureSize)
	}
	if !ed25519.Verify(key, Message(t), sig) {
		return fmt.Errorf("%w: the signature by key %q does not match the task (a field was changed, or it was signed by another key)", ErrUnauthenticated, t.Auth.KeyID)
	}
	return nil
}

// Message is the byte string a task's signature covers: a version tag and
// each field length-prefixed, so no two tasks share one.
func Message(t *trigger.DeliveryTask) []byte {
	var b bytes.Buffer
	b.WriteString("triggerflow-task-v1")
	field := func(s string) {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(s)))
		b.Write(n[:])
		b.WriteString(s)
	}
	field(strconv.Itoa(t.V))
	field(t.Tenant)
	field(t.TriggerID)
	field(t.TriggerVersion)
	field(t.Collection)
	field(t.CollectionPattern)
	field(t.DocKey)
	field(t.EventID)
	field(string(t.Type))
	field(t.Position)
	field(t.CommitTime.UTC().Format(time.RFC3339Nano))
	field(t.URL)
	names := slices.Sorted(maps.Keys(t.Headers))
	field(strconv.Itoa(len(names)))
	for _, k := range names {
		field(k)
		field(t.Headers[k])
	}
	field(t.SecretsRef)
	field(strconv.Itoa(t.RetryPolicy.MaxAttempts))
	field(t.RetryPolicy.InitialBackoff.String())
	field(t.RetryPolicy.MaxBackoff.String())
	field(strconv.FormatFloat(t.RetryPolicy.Multiplier, 'g', -1, 64))
	field(t.Timeout.String())
	field(string(t.OnFailure))
	field(strconv.FormatBool(t.SubjectHashed))
	field(digest(t.Before, t.BeforeRef))
	field(digest(t.After, t.AfterRef))
	return b.Bytes()
}

// digest is the digest of a document image (trigger.ImageDigest of its
// canonical form), inline or stored: the publisher may move an image to
// the image bucket after the task was signed, and the reference carries
// the same digest, which the worker checks the fetched object against. An
// absent image digests as "".
func digest(raw json.RawMessage, ref *trigger.ImageRef) string {
	switch {
	case len(raw) > 0:
		return trigger.ImageDigest(trigger.CanonicalImage(raw))
	case ref != nil:
		return ref.Digest
	}
	return ""
}

func checkID(id string) error {
	if err := keyfile.CheckID(id); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidKey, err)
	}
	return nil
}
