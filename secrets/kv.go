package secrets

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/triggerflow/triggerflow/signature"
)

// DefaultBucket is the key-value bucket of the NATS backend.
const DefaultBucket = "triggerflow-secrets"

// KV is the NATS JetStream key-value backend for deployments: the secrets
// of (tenant, ref) are the value of key "<tenant>.<ref>" in the ParseList
// format. Tenants contain no '.', so the first key token is always the
// tenant and one tenant's keys cannot collide with another's; per-tenant
// NATS permissions can be granted on "$KV.<bucket>.<tenant>.>".
type KV struct {
	kv jetstream.KeyValue
}

var _ Manager = (*KV)(nil)

// NewKV returns the backend reading kv.
func NewKV(kv jetstream.KeyValue) *KV { return &KV{kv: kv} }

// OpenKV binds to the existing bucket (provisioned by the deployment; it
// is not created here, so a typo in the bucket name fails at startup).
func OpenKV(ctx context.Context, js jetstream.JetStream, bucket string) (*KV, error) {
	kv, err := js.KeyValue(ctx, bucket)
	if err != nil {
		return nil, fmt.Errorf("secrets: opening key-value bucket %q: %w", bucket, err)
	}
	return NewKV(kv), nil
}

// KVKey is the key holding (tenant, ref).
func KVKey(tenant, ref string) (string, error) {
	if err := validate(tenant, ref); err != nil {
		return "", err
	}
	return tenant + "." + ref, nil
}

// Resolve reads key KVKey(tenant, ref).
func (k *KV) Resolve(ctx context.Context, tenant, ref string) ([]signature.Secret, error) {
	key, err := KVKey(tenant, ref)
	if err != nil {
		return nil, err
	}
	where := "key-value key " + key
	entry, err := k.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, notFound(tenant, ref, where)
	}
	if err != nil {
		return nil, fmt.Errorf("secrets: tenant %q ref %q: reading %s: %w", tenant, ref, where, err)
	}
	return parseFor(entry.Value(), tenant, ref, where)
}

// Put stores secrets (newest first) as (tenant, ref), replacing what was
// there: the provisioning side of Resolve, for tools and tests.
func (k *KV) Put(ctx context.Context, tenant, ref string, secrets ...signature.Secret) error {
	key, err := KVKey(tenant, ref)
	if err != nil {
		return err
	}
	if len(secrets) == 0 {
		return fmt.Errorf("secrets: tenant %q ref %q: %w", tenant, ref, signature.ErrNoSecrets)
	}
	var b bytes.Buffer
	for _, s := range secrets {
		b.WriteString(s.Encode())
		b.WriteByte('\n')
	}
	if _, err := k.kv.Put(ctx, key, b.Bytes()); err != nil {
		return fmt.Errorf("secrets: tenant %q ref %q: writing key-value key %s: %w", tenant, ref, key, err)
	}
	return nil
}
