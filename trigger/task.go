package trigger

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// TaskVersion is the wire version of DeliveryTask. Consumers refuse tasks of
// a version they do not know instead of guessing at their meaning.
const TaskVersion = 1

// ErrInvalidTask is wrapped by every DecodeTask and DeliveryTask.Validate error.
var ErrInvalidTask = errors.New("invalid delivery task")

// DeliveryTask is the message the publisher puts on JetStream. It carries
// everything ingest and the worker need, so neither reads trigger files: the
// delivery that runs is the one the trigger described when the change was
// matched, even if the trigger changes later.
type DeliveryTask struct {
	// V is TaskVersion.
	V int `json:"v"`
	// EventID identifies this (trigger, change) pair; it is the same on every
	// republish and redelivery, so it is the dedupe key end to end and the
	// webhook-id the receiver sees.
	EventID        string `json:"eventId"`
	Tenant         string `json:"tenant"`
	TriggerID      string `json:"triggerId"`
	TriggerVersion string `json:"triggerVersion,omitempty"`
	Collection     string `json:"collection"`
	// CollectionPattern is the trigger's collection glob. Metrics label
	// by it rather than by Collection, whose paths may embed ids
	// ("chats/42/members") and would make label values unbounded.
	CollectionPattern string    `json:"collectionPattern,omitempty"`
	DocKey            string    `json:"docKey"`
	Type              EventType `json:"type"`
	// Before and After are the document images as JSON; either may be absent
	// (no before image for a create, no after image for a delete).
	Before json.RawMessage `json:"before,omitempty"`
	After  json.RawMessage `json:"after,omitempty"`
	// BeforeRef and AfterRef replace Before and After when the image was
	// stored in the image bucket instead (a claim check): the publisher
	// moves large images there, the worker fetches them back at delivery.
	BeforeRef *ImageRef `json:"beforeRef,omitempty"`
	AfterRef  *ImageRef `json:"afterRef,omitempty"`
	// Position is the source's opaque resume token for this change.
	Position string `json:"position"`
	// CommitTime is when the change committed at the source; end-to-end
	// latency is measured from here.
	CommitTime time.Time         `json:"commitTime"`
	URL        string            `json:"url"`
	Headers    map[string]string `json:"headers,omitempty"`
	SecretsRef string            `json:"secretsRef,omitempty"`
	// RetryPolicy is the trigger's policy after the file default was
	// applied; fields still zero take the worker's defaults.
	RetryPolicy RetryPolicy `json:"retryPolicy"`
	Timeout     Duration    `json:"timeout,omitempty"`
	OnFailure   FailureMode `json:"onFailure,omitempty"`
	// SubjectHashed is true when the subject's docKey token is a hash; the
	// DocKey field is always the real key.
	SubjectHashed bool `json:"subjectHashed"`
	// Redrive is non-zero when an operator redrove this task from the
	// dead-letter stream (it is the dead letter's sequence number). It
	// changes the dedupe key so the redriven task is delivered again, while
	// EventID, and so the receiver's webhook-id, stays the same.
	Redrive uint64 `json:"redrive,omitempty"`
	// Auth is the watcher's signature (package tasksig); nil when tasks
	// are not signed.
	Auth *TaskAuth `json:"auth,omitempty"`
}

// TaskAuth authenticates a task: the id of the key that signed it and the
// Ed25519 signature, base64url without padding.
type TaskAuth struct {
	KeyID string `json:"keyId"`
	Sig   string `json:"sig"`
}

// ImageRef points at a document image held in the image bucket. The
// object holds the image in canonical form (CanonicalImage), so its
// SHA-256 is the image's digest however it was stored.
type ImageRef struct {
	// Object is the object's name in the bucket.
	Object string `json:"object"`
	// Bucket is "" for the task stream's image bucket, "dead-letters" for
	// the copy a dead letter keeps. It is not signed: the worker reads
	// only these two buckets, and the digest decides what is delivered.
	Bucket string `json:"bucket,omitempty"`
	// Size is the object's length in bytes.
	Size int64 `json:"size"`
	// Digest is ImageDigest of the image: base64url SHA-256 without
	// padding. The task signature covers it.
	Digest string `json:"sha256"`
}

// CanonicalImage is the form a document image is digested and stored in:
// compact JSON with HTML-sensitive characters escaped, which is how
// encoding/json writes a json.RawMessage. An image that went through a
// JSON round trip (NATS, Temporal's payloads) keeps its canonical form.
// Bytes that are not JSON are returned as they are.
func CanonicalImage(raw json.RawMessage) []byte {
	var compact, escaped bytes.Buffer
	if err := json.Compact(&compact, raw); err != nil {
		return raw
	}
	json.HTMLEscape(&escaped, compact.Bytes())
	return escaped.Bytes()
}

// ImageDigest is the digest of a canonical image: base64url SHA-256
// without padding.
func ImageDigest(canonical []byte) string {
	sum := sha256.Sum256(canonical)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// MetricCollection is the collection metric label for this task: the
// trigger's collection pattern, so that paths with ids in them
// ("chats/42/members" → "chats/*/members") keep label values bounded; the
// collection itself for tasks without one.
func (t *DeliveryTask) MetricCollection() string {
	if t.CollectionPattern != "" {
		return t.CollectionPattern
	}
	return t.Collection
}

// DedupeKey identifies this delivery for duplicate suppression (the
// JetStream message id and the workflow's dedupe set): the event id, plus
// the redrive number for a redriven task.
func (t *DeliveryTask) DedupeKey() string {
	if t.Redrive == 0 {
		return t.EventID
	}
	return fmt.Sprintf("%s#redrive-%d", t.EventID, t.Redrive)
}

// NewEventID derives the event id of a trigger firing on a change. It is a
// pure function of its inputs so that a watcher that re-reads a change after
// a crash produces the same id, which JetStream's duplicate window and the
// workflow's dedupe set then drop. The parts are length-prefixed, so no two
// different inputs hash the same bytes.
func NewEventID(tenant, triggerID, collection, docKey, position string) string {
	h := sha256.New()
	var n [8]byte
	for _, p := range []string{tenant, triggerID, collection, docKey, position} {
		binary.BigEndian.PutUint64(n[:], uint64(len(p)))
		h.Write(n[:])
		h.Write([]byte(p))
	}
	return "evt_" + hex.EncodeToString(h.Sum(nil)[:20])
}

// Encode returns the task as JSON.
func (t *DeliveryTask) Encode() ([]byte, error) {
	return json.Marshal(t)
}

// DecodeTask parses and validates a task. Unknown fields are allowed so a
// newer publisher can add optional fields during a rolling upgrade; a newer
// version number is not.
func DecodeTask(b []byte) (*DeliveryTask, error) {
	var t DeliveryTask
	if err := json.Unmarshal(b, &t); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidTask, err)
	}
	if err := t.Validate(); err != nil {
		return nil, err
	}
	return &t, nil
}

// Validate checks the fields a consumer relies on.
func (t *DeliveryTask) Validate() error {
	var errs []error
	bad := func(field, msg string) { errs = append(errs, fmt.Errorf("%s %s", field, msg)) }
	if t.V != TaskVersion {
		bad("v", fmt.Sprintf("is %d, want %d", t.V, TaskVersion))
	}
	for _, f := range []struct{ name, v string }{
		{"eventId", t.EventID}, {"tenant", t.Tenant}, {"triggerId", t.TriggerID},
		{"collection", t.Collection}, {"docKey", t.DocKey}, {"position", t.Position}, {"url", t.URL},
	} {
		if f.v == "" {
			bad(f.name, "is empty")
		}
	}
	if !t.Type.Valid() {
		bad("type", fmt.Sprintf("%q is not create, update or delete", t.Type))
	}
	if t.CommitTime.IsZero() {
		bad("commitTime", "is missing")
	}
	for _, img := range []struct {
		name string
		raw  json.RawMessage
		ref  *ImageRef
	}{{"before", t.Before, t.BeforeRef}, {"after", t.After, t.AfterRef}} {
		if len(img.raw) > 0 && !json.Valid(img.raw) {
			bad(img.name, "is not valid JSON")
		}
		if img.ref == nil {
			continue
		}
		switch {
		case len(img.raw) > 0:
			bad(img.name+"Ref", "is set along with "+img.name)
		case img.ref.Object == "" || img.ref.Size < 1 || len(img.ref.Digest) != 43:
			bad(img.name+"Ref", "needs an object name, a positive size and a SHA-256 digest")
		}
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrInvalidTask, errors.Join(errs...))
}
