package tasksig_test

import (
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/triggerflow/triggerflow/images"
	"github.com/triggerflow/triggerflow/tasksig"
	"github.com/triggerflow/triggerflow/trigger"
)

func newKey(t testing.TB) (ed25519.PublicKey, ed25519.PrivateKey) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(nil)
	require.NoError(t, err)
	return pub, priv
}

func task() *trigger.DeliveryTask {
	return &trigger.DeliveryTask{
		V: trigger.TaskVersion, EventID: "evt_1", Tenant: "acme", TriggerID: "order-paid", Collection: "orders",
		DocKey: "o-1", Type: trigger.EventUpdate, Position: "00000000000000000042", CommitTime: time.Unix(1700000000, 5).UTC(),
		URL: "https://hooks.acme.example/paid", Headers: map[string]string{"X-A": "1", "X-B": "2"}, SecretsRef: "default",
		Before: json.RawMessage(`{"status": "new"}`), After: json.RawMessage(`{"status":"paid","note":"<b>"}`),
		RetryPolicy: trigger.RetryPolicy{MaxAttempts: 5, InitialBackoff: trigger.Duration(time.Second), Multiplier: 2},
	}
}

// keyPair is a signer and a verifier of one new key, "k1".
func keyPair(t *testing.T) (*tasksig.Signer, *tasksig.Verifier) {
	t.Helper()
	pub, priv := newKey(t)
	s, err := tasksig.NewSigner("k1", priv)
	require.NoError(t, err)
	v, err := tasksig.NewVerifier(map[string]ed25519.PublicKey{"k1": pub})
	require.NoError(t, err)
	return s, v
}

func TestSignedTaskVerifies(t *testing.T) {
	t.Parallel()
	s, v := keyPair(t)

	tk := task()
	s.Sign(tk)
	require.NoError(t, v.Verify(tk))

	// Through a JSON round trip, as over NATS and through Temporal, which
	// compacts and escapes the document images.
	b, err := json.Marshal(tk)
	require.NoError(t, err)
	var back trigger.DeliveryTask
	require.NoError(t, json.Unmarshal(b, &back))
	require.NoError(t, v.Verify(&back))

	// A redrive is the same delivery.
	back.Redrive = 7
	require.NoError(t, v.Verify(&back))
}

func TestChangedTaskIsRefused(t *testing.T) {
	t.Parallel()
	s, v := keyPair(t)
	for name, change := range map[string]func(*trigger.DeliveryTask){
		"url":        func(t *trigger.DeliveryTask) { t.URL = "https://attacker.example/" },
		"tenant":     func(t *trigger.DeliveryTask) { t.Tenant = "globex" },
		"secretsRef": func(t *trigger.DeliveryTask) { t.SecretsRef = "other" },
		"header":     func(t *trigger.DeliveryTask) { t.Headers["X-A"] = "2" },
		"new header": func(t *trigger.DeliveryTask) { t.Headers["X-C"] = "3" },
		"after":      func(t *trigger.DeliveryTask) { t.After = json.RawMessage(`{"status":"refunded"}`) },
		"retries":    func(t *trigger.DeliveryTask) { t.RetryPolicy.MaxAttempts = 1000 },
		"timeout":    func(t *trigger.DeliveryTask) { t.Timeout = trigger.Duration(time.Minute) },
		"type":       func(t *trigger.DeliveryTask) { t.Type = trigger.EventDelete },
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			tk := task()
			s.Sign(tk)
			change(tk)
			err := v.Verify(tk)
			require.ErrorIs(t, err, tasksig.ErrUnauthenticated)
			require.ErrorContains(t, err, "does not match")
		})
	}
}

// A task signed with its images inline still verifies once the publisher
// moved them into the image bucket: a reference carries the digest the
// signature covers. A reference to another image does not verify.
func TestImagesMovedToReferencesStillVerify(t *testing.T) {
	t.Parallel()
	s, v := keyPair(t)
	tk := task()
	s.Sign(tk)

	// As the publisher does: the after image by images.Ref, the before
	// image by hand.
	after, _ := images.Ref(images.ObjectName(tk, "after"), tk.After)
	canonical := trigger.CanonicalImage(tk.Before)
	before := trigger.ImageRef{Object: images.ObjectName(tk, "before"), Size: int64(len(canonical)), Digest: trigger.ImageDigest(canonical)}
	moved := *tk
	moved.After, moved.AfterRef = nil, &after
	require.NoError(t, moved.Validate())
	require.NoError(t, v.Verify(&moved), "one image moved")
	moved.Before, moved.BeforeRef = nil, &before
	require.NoError(t, moved.Validate())
	require.NoError(t, v.Verify(&moved), "both images moved")
	require.Equal(t, tasksig.Message(tk), tasksig.Message(&moved))

	// Where the image is stored is not signed: the digest decides.
	copied := moved
	c := after
	c.Object, c.Bucket = "acme/delivery/evt_1/after", "dead-letters"
	copied.AfterRef = &c
	require.NoError(t, v.Verify(&copied))

	forged := moved
	f := after
	f.Digest = trigger.ImageDigest(trigger.CanonicalImage(json.RawMessage(`{"status":"refunded"}`)))
	forged.AfterRef = &f
	err := v.Verify(&forged)
	require.ErrorIs(t, err, tasksig.ErrUnauthenticated)
	require.ErrorContains(t, err, "does not match")

	dropped := moved
	dropped.BeforeRef = nil
	require.ErrorIs(t, v.Verify(&dropped), tasksig.ErrUnauthenticated, "an image cannot be removed")
}

func TestUnsignedAndForeignTasksAreRefused(t *testing.T) {
	t.Parallel()
	pub, _ := newKey(t)
	_, attacker := newKey(t)
	v, _ := tasksig.NewVerifier(map[string]ed25519.PublicKey{"k1": pub})

	require.ErrorContains(t, v.Verify(task()), "not signed")

	forged := task()
	s, _ := tasksig.NewSigner("k1", attacker) // claims the real key id
	s.Sign(forged)
	require.ErrorIs(t, v.Verify(forged), tasksig.ErrUnauthenticated)

	unknown := task()
	s2, _ := tasksig.NewSigner("k9", attacker)
	s2.Sign(unknown)
	require.ErrorContains(t, v.Verify(unknown), `key "k9", which is not among the verification keys`)
}

// Keys rotate: a verifier with both keys accepts both; once the old key
// is removed, tasks it signed are refused.
func TestKeyRotation(t *testing.T) {
	t.Parallel()
	oldPub, oldPriv := newKey(t)
	newPub, newPriv := newKey(t)
	oldS, _ := tasksig.NewSigner("old", oldPriv)
	newS, _ := tasksig.NewSigner("new", newPriv)
	a, b := task(), task()
	oldS.Sign(a)
	newS.Sign(b)

	both, _ := tasksig.NewVerifier(map[string]ed25519.PublicKey{"old": oldPub, "new": newPub})
	require.NoError(t, both.Verify(a))
	require.NoError(t, both.Verify(b))

	rotated, _ := tasksig.NewVerifier(map[string]ed25519.PublicKey{"new": newPub})
	require.ErrorIs(t, rotated.Verify(a), tasksig.ErrUnauthenticated)
	require.NoError(t, rotated.Verify(b))
}

func TestKeyFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	signing, verifying := filepath.Join(dir, "task-signing.key"), filepath.Join(dir, "task-verify.keys")
	require.NoError(t, tasksig.EnsureKeyPair(signing, verifying))
	before, err := os.ReadFile(signing)
	require.NoError(t, err)
	require.NoError(t, tasksig.EnsureKeyPair(signing, verifying), "an existing pair is kept")
	after, _ := os.ReadFile(signing)
	require.Equal(t, before, after)

	s, err := tasksig.LoadSigner(signing)
	require.NoError(t, err)
	v, err := tasksig.LoadVerifier(verifying)
	require.NoError(t, err)
	tk := task()
	s.Sign(tk)
	require.NoError(t, v.Verify(tk))

	bad := filepath.Join(dir, "bad.keys")
	require.NoError(t, os.WriteFile(bad, []byte("# comment\nk1=notbase64!\n"), 0o600))
	_, err = tasksig.LoadVerifier(bad)
	require.ErrorIs(t, err, tasksig.ErrInvalidKey)
	require.ErrorContains(t, err, "bad.keys: line 2, entry 1")
}

func ExampleSigner() {
	pub, priv, _ := ed25519.GenerateKey(nil)
	s, _ := tasksig.NewSigner("k1", priv)
	v, _ := tasksig.NewVerifier(map[string]ed25519.PublicKey{"k1": pub})
	tk := task()
	s.Sign(tk)
	fmt.Println(v.Verify(tk))
	tk.URL = "https://attacker.example/"
	fmt.Println(v.Verify(tk) != nil)
	// Output:
	// <nil>
	// true
}

func FuzzVerify(f *testing.F) {
	pub, priv, _ := ed25519.GenerateKey(nil)
	s, _ := tasksig.NewSigner("k1", priv)
	v, _ := tasksig.NewVerifier(map[string]ed25519.PublicKey{"k1": pub})
	tk := task()
	s.Sign(tk)
	good, _ := json.Marshal(tk)
	f.Add(good)
	f.Add([]byte(`{"auth":{"keyId":"k1","sig":"!!"}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var tk trigger.DeliveryTask
		if json.Unmarshal(b, &tk) != nil {
			return
		}
		_ = v.Verify(&tk) // never panics
	})
}
