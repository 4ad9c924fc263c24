package secrets_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/triggerflow/triggerflow/internal/testenv"
	"github.com/triggerflow/triggerflow/secrets"
	"github.com/triggerflow/triggerflow/signature"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func newSecret(t testing.TB) signature.Secret {
	t.Helper()
	s, err := signature.NewSecret()
	require.NoError(t, err)
	return s
}

// requireNoLeak asserts that no encoding of any secret appears in err.
func requireNoLeak(t *testing.T, err error, values ...string) {
	t.Helper()
	require.Error(t, err)
	for _, v := range values {
		require.NotContains(t, err.Error(), v)
		require.NotContains(t, err.Error(), strings.TrimPrefix(v, signature.SecretPrefix))
	}
}

// backend is one Manager plus a way to store raw list text for a
// (tenant, ref) in it, so every backend runs the same conformance suite.
type backend struct {
	m     secrets.Manager
	store func(t *testing.T, tenant, ref, content string)
}

func dirBackend(t *testing.T) backend {
	dir := t.TempDir()
	return backend{
		m: secrets.NewDir(dir),
		store: func(t *testing.T, tenant, ref, content string) {
			require.NoError(t, os.MkdirAll(filepath.Join(dir, tenant), 0o700))
			require.NoError(t, os.WriteFile(filepath.Join(dir, tenant, ref), []byte(content), 0o600))
		},
	}
}

func envBackend(t *testing.T) backend {
	var mu sync.Mutex
	vars := map[string]string{}
	return backend{
		m: secrets.NewEnv("", func(k string) (string, bool) {
			mu.Lock()
			defer mu.Unlock()
			v, ok := vars[k]
			return v, ok
		}),
		store: func(t *testing.T, tenant, ref, content string) {
			name, err := secrets.EnvName(secrets.DefaultEnvPrefix, tenant, ref)
			require.NoError(t, err)
			mu.Lock()
			defer mu.Unlock()
			vars[name] = content
		},
	}
}

func kvBackend(t *testing.T) (backend, jetstream.KeyValue) {
	nc := testenv.NATS(t).Conn(t)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	kv, err := js.CreateKeyValue(t.Context(), jetstream.KeyValueConfig{Bucket: secrets.DefaultBucket})
	require.NoError(t, err)
	return backend{
		m: secrets.NewKV(kv),
		store: func(t *testing.T, tenant, ref, content string) {
			key, err := secrets.KVKey(tenant, ref)
			require.NoError(t, err)
			_, err = kv.Put(t.Context(), key, []byte(content))
			require.NoError(t, err)
		},
	}, kv
}

func TestBackends(t *testing.T) {
	t.Parallel()
	backends := map[string]func(t *testing.T) backend{
		"dir": dirBackend,
		"env": envBackend,
		"kv":  func(t *testing.T) backend { b, _ := kvBackend(t); return b },
	}
	for name, mk := range backends {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b := mk(t)
			ctx := t.Context()
			newer, older, other := newSecret(t), newSecret(t), newSecret(t)

			b.store(t, "tenant-a", "orders", "# rotated\n"+newer.Encode()+"\n"+older.Encode()+"  # until Friday\n")
			b.store(t, "tenant-b", "orders", other.Encode())
			b.store(t, "tenant-b", "billing.v2", other.Encode())
			b.store(t, "acme-co", "orders", other.Encode())

			t.Run("rotation returns every active secret, in order", func(t *testing.T) {
				got, err := b.m.Resolve(ctx, "tenant-a", "orders")
				require.NoError(t, err)
				require.Equal(t, []signature.Secret{newer, older}, got)
			})

			t.Run("tenants are isolated", func(t *testing.T) {
				got, err := b.m.Resolve(ctx, "tenant-b", "orders")
				require.NoError(t, err)
				require.Equal(t, []signature.Secret{other}, got)

				_, err = b.m.Resolve(ctx, "tenant-a", "billing.v2")
				require.ErrorIs(t, err, secrets.ErrNotFound)
				require.ErrorContains(t, err, "tenant-a")
				require.ErrorContains(t, err, "billing.v2")

				// A ref chosen to collide with another tenant's names.
				_, err = b.m.Resolve(ctx, "acme", "co_orders")
				require.ErrorIs(t, err, secrets.ErrNotFound)
				_, err = b.m.Resolve(ctx, "acme", "co.orders")
				require.ErrorIs(t, err, secrets.ErrNotFound)

				for _, ref := range []string{"../tenant-b/orders", "tenant-b/orders", "..", ".", "/etc/passwd", "a..b", ".orders", "orders.", "or ders", "*", ">"} {
					_, err := b.m.Resolve(ctx, "tenant-a", ref)
					require.ErrorIs(t, err, secrets.ErrInvalidName, ref)
				}
				for _, tenant := range []string{"", "tenant-b/..", "..", "tenant.b", "tenant-b.orders", "*", ">"} {
					_, err := b.m.Resolve(ctx, tenant, "orders")
					require.ErrorIs(t, err, secrets.ErrInvalidName, tenant)
				}
			})

			t.Run("missing", func(t *testing.T) {
				_, err := b.m.Resolve(ctx, "tenant-c", "orders")
				require.ErrorIs(t, err, secrets.ErrNotFound)
			})

			t.Run("all commented out is revoked", func(t *testing.T) {
				b.store(t, "tenant-a", "revoked", "# "+older.Encode()+"\n\n")
				_, err := b.m.Resolve(ctx, "tenant-a", "revoked")
				require.ErrorIs(t, err, secrets.ErrNotFound)
				requireNoLeak(t, err, older.Encode())
			})

			t.Run("malformed never leaks", func(t *testing.T) {
				short := "whsec_c2hvcnQta2V5LW9ubHktMjA="                                // 20 bytes
				broken := "whsec_" + strings.Repeat("A", 30) + "!" + "=="                // not base64
				unprefixed := strings.TrimPrefix(older.Encode(), signature.SecretPrefix) // raw base64
				for i, bad := range []string{short, broken, unprefixed} {
					ref := fmt.Sprintf("bad%d", i)
					b.store(t, "tenant-a", ref, newer.Encode()+"\n"+bad+"\n")
					_, err := b.m.Resolve(ctx, "tenant-a", ref)
					require.ErrorIs(t, err, secrets.ErrMalformed)
					require.ErrorIs(t, err, signature.ErrInvalidSecret)
					require.ErrorContains(t, err, "line 2, entry 1")
					requireNoLeak(t, err, newer.Encode(), bad)
				}
			})

			t.Run("canceled context", func(t *testing.T) {
				cctx, cancel := context.WithCancel(ctx)
				cancel()
				_, err := b.m.Resolve(cctx, "tenant-a", "orders")
				require.ErrorIs(t, err, context.Canceled)
			})
		})
	}
}

func TestParseList(t *testing.T) {
	t.Parallel()
	a, b := newSecret(t), newSecret(t)
	got, err := secrets.ParseList([]byte(fmt.Sprintf("  %s , %s\r\n# %s\n\t%s #dup\n", a.Encode(), b.Encode(), a.Encode(), a.Encode())))
	require.NoError(t, err)
	require.Equal(t, []signature.Secret{a, b}, got)

	got, err = secrets.ParseList(nil)
	require.NoError(t, err)
	require.Empty(t, got)

	_, err = secrets.ParseList([]byte(a.Encode() + ",whsec_x"))
	require.ErrorIs(t, err, secrets.ErrMalformed)
	require.ErrorContains(t, err, "line 1, entry 2")
	requireNoLeak(t, err, a.Encode())
}

func FuzzParseList(f *testing.F) {
	f.Add([]byte("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n# c\n"))
	f.Add([]byte(",,, \n\n#"))
	f.Add([]byte("whsec_=="))
	f.Fuzz(func(t *testing.T, data []byte) {
		list, err := secrets.ParseList(data)
		if err != nil {
			require.ErrorIs(t, err, secrets.ErrMalformed)
			return
		}
		for _, s := range list {
			require.GreaterOrEqual(t, len(s), signature.MinSecretBytes)
		}
	})
}

func TestValidateNames(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{"a", "Tenant_1", "acme-co", strings.Repeat("x", 128)} {
		require.NoError(t, secrets.ValidateTenant(ok), ok)
	}
	for _, bad := range []string{"", "a.b", "a/b", "ü", strings.Repeat("x", 129), "a b"} {
		require.ErrorIs(t, secrets.ValidateTenant(bad), secrets.ErrInvalidName, bad)
	}
	for _, ok := range []string{"orders", "orders.v2", "a-b_c.d"} {
		require.NoError(t, secrets.ValidateRef(ok), ok)
	}
	for _, bad := range []string{"", ".", "..", "a..b", ".a", "a.", "a/b", `a\b`, "a\x00"} {
		require.ErrorIs(t, secrets.ValidateRef(bad), secrets.ErrInvalidName, bad)
	}
}

func TestEnvName(t *testing.T) {
	t.Parallel()
	name, err := secrets.EnvName(secrets.DefaultEnvPrefix, "acme-co", "orders.v2")
	require.NoError(t, err)
	require.Equal(t, "TRIGGERFLOW_SECRET_ACME_CO__ORDERS_V2", name)

	seen := map[string]string{}
	for _, pair := range [][2]string{{"acme", "co_orders"}, {"acme-co", "orders"}, {"acme_co", "orders_x"}, {"acme", "co_orders_x"}} {
		n, err := secrets.EnvName("P_", pair[0], pair[1])
		require.NoError(t, err)
		require.NotContains(t, seen, n, "%v collides with %v", pair, seen[n])
		seen[n] = pair[0] + "/" + pair[1]
	}
	for _, pair := range [][2]string{{"acme-", "x"}, {"_acme", "x"}, {"a--b", "x"}, {"acme", "x-.y"}, {"acme", "x_"}, {"acme", "-x"}} {
		_, err := secrets.EnvName("P_", pair[0], pair[1])
		require.ErrorIs(t, err, secrets.ErrInvalidName, "%v", pair)
	}
}

func TestEnvReadsProcessEnvironment(t *testing.T) {
	// t.Setenv forbids t.Parallel.
	s := newSecret(t)
	t.Setenv("TRIGGERFLOW_SECRET_T1__R1", " "+s.Encode()+" ")
	got, err := secrets.NewEnv("", nil).Resolve(t.Context(), "t1", "r1")
	require.NoError(t, err)
	require.Equal(t, []signature.Secret{s}, got)
}

func TestDirRefusesSymlinkOutOfTenant(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := newSecret(t)
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "b"), 0o700))
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "a"), 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "b", "orders"), []byte(s.Encode()), 0o600))
	require.NoError(t, os.Symlink(filepath.Join("..", "b", "orders"), filepath.Join(dir, "a", "orders")))
	require.NoError(t, os.Mkdir(filepath.Join(dir, "a", "subdir"), 0o700))

	m := secrets.NewDir(dir)
	_, err := m.Resolve(t.Context(), "a", "orders")
	require.Error(t, err)
	requireNoLeak(t, err, s.Encode())
	_, err = m.Resolve(t.Context(), "a", "subdir")
	require.ErrorContains(t, err, "not a regular file")

	got, err := m.Resolve(t.Context(), "b", "orders")
	require.NoError(t, err)
	require.Equal(t, []signature.Secret{s}, got)
}

func TestDirOversize(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "a"), 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "a", "big"), []byte(strings.Repeat("#\n", 40<<10)), 0o600))
	_, err := secrets.NewDir(dir).Resolve(t.Context(), "a", "big")
	require.ErrorIs(t, err, secrets.ErrMalformed)
	require.ErrorContains(t, err, "limit")
}

func TestEnsure(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "secrets")

	// Concurrent first use agrees on one secret.
	const n = 8
	results := make([][]signature.Secret, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			list, err := secrets.Ensure(dir, "dev", "demo")
			require.NoError(t, err)
			results[i] = list
		})
	}
	wg.Wait()
	for _, r := range results {
		require.Len(t, r, 1)
		require.Equal(t, results[0], r)
	}

	path := filepath.Join(dir, "dev", "demo")
	st, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm())
	dst, err := os.Stat(filepath.Dir(path))
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o700), dst.Mode().Perm())
	entries, err := os.ReadDir(filepath.Dir(path))
	require.NoError(t, err)
	require.Len(t, entries, 1, "temporary files are cleaned up")

	// Existing secrets are kept.
	again, err := secrets.Ensure(dir, "dev", "demo")
	require.NoError(t, err)
	require.Equal(t, results[0], again)
	got, err := secrets.NewDir(dir).Resolve(t.Context(), "dev", "demo")
	require.NoError(t, err)
	require.Equal(t, results[0], got)

	_, err = secrets.Ensure(dir, "dev", "../escape")
	require.ErrorIs(t, err, secrets.ErrInvalidName)

	require.NoError(t, os.WriteFile(path, []byte("whsec_nope\n"), 0o600))
	_, err = secrets.Ensure(dir, "dev", "demo")
	require.ErrorIs(t, err, secrets.ErrMalformed)
}

func TestKV(t *testing.T) {
	t.Parallel()
	b, kv := kvBackend(t)
	m := b.m.(*secrets.KV)
	s1, s2 := newSecret(t), newSecret(t)
	require.NoError(t, m.Put(t.Context(), "t1", "orders", s1, s2))
	got, err := m.Resolve(t.Context(), "t1", "orders")
	require.NoError(t, err)
	require.Equal(t, []signature.Secret{s1, s2}, got)
	entry, err := kv.Get(t.Context(), "t1.orders")
	require.NoError(t, err)
	require.Contains(t, string(entry.Value()), s1.Encode())

	require.ErrorIs(t, m.Put(t.Context(), "t1", "orders"), signature.ErrNoSecrets)
	require.ErrorIs(t, m.Put(t.Context(), "t1", "../x", s1), secrets.ErrInvalidName)

	require.NoError(t, kv.Delete(t.Context(), "t1.orders"))
	_, err = m.Resolve(t.Context(), "t1", "orders")
	require.ErrorIs(t, err, secrets.ErrNotFound)
}

func TestNew(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	dir := t.TempDir()
	list, err := secrets.Ensure(dir, "t1", "r1")
	require.NoError(t, err)

	m, err := secrets.New(ctx, secrets.Config{Backend: secrets.BackendFile, Dir: dir}, nil)
	require.NoError(t, err)
	got, err := m.Resolve(ctx, "t1", "r1")
	require.NoError(t, err)
	require.Equal(t, list, got)

	_, err = secrets.New(ctx, secrets.Config{Backend: secrets.BackendFile, Dir: filepath.Join(dir, "missing")}, nil)
	require.Error(t, err)

	m, err = secrets.New(ctx, secrets.Config{Backend: secrets.BackendEnv, EnvPrefix: "TF_TEST_UNSET_"}, nil)
	require.NoError(t, err)
	_, err = m.Resolve(ctx, "t1", "r1")
	require.ErrorIs(t, err, secrets.ErrNotFound)
	require.ErrorContains(t, err, "TF_TEST_UNSET_T1__R1")

	_, err = secrets.New(ctx, secrets.Config{Backend: secrets.BackendNATSKV}, nil)
	require.Error(t, err)
	_, err = secrets.New(ctx, secrets.Config{Backend: "vault"}, nil)
	require.Error(t, err)

	nc := testenv.NATS(t).Conn(t)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	_, err = secrets.New(ctx, secrets.Config{Backend: secrets.BackendNATSKV, Bucket: "absent"}, js)
	require.ErrorIs(t, err, jetstream.ErrBucketNotFound)
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "present"})
	require.NoError(t, err)
	s := newSecret(t)
	require.NoError(t, secrets.NewKV(kv).Put(ctx, "t1", "r1", s))
	m, err = secrets.New(ctx, secrets.Config{Backend: secrets.BackendNATSKV, Bucket: "present"}, js)
	require.NoError(t, err)
	got, err = m.Resolve(ctx, "t1", "r1")
	require.NoError(t, err)
	require.Equal(t, []signature.Secret{s}, got)
}

type countingManager struct {
	mu    sync.Mutex
	calls int
	list  []signature.Secret
	err   error
}

func (c *countingManager) Resolve(context.Context, string, string) ([]signature.Secret, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls++
	return c.list, c.err
}

func TestCache(t *testing.T) {
	t.Parallel()
	now := time.Unix(1000, 0)
	clock := func() time.Time { return now }
	s := newSecret(t)
	next := &countingManager{list: []signature.Secret{s}}
	c := secrets.NewCache(next, secrets.CacheConfig{TTL: time.Minute, MaxEntries: 2, Now: clock})
	ctx := t.Context()

	for range 3 {
		got, err := c.Resolve(ctx, "t", "r")
		require.NoError(t, err)
		require.Equal(t, []signature.Secret{s}, got)
	}
	require.Equal(t, 1, next.calls)

	now = now.Add(time.Minute)
	_, err := c.Resolve(ctx, "t", "r")
	require.NoError(t, err)
	require.Equal(t, 2, next.calls, "expired entries are refreshed")

	_, err = c.Resolve(ctx, "t", "other")
	require.NoError(t, err)
	_, err = c.Resolve(ctx, "t", "third") // over MaxEntries: still served
	require.NoError(t, err)
	require.Equal(t, 4, next.calls)

	// Failures are not cached.
	next.err, next.list = errors.New("backend down"), nil
	now = now.Add(time.Hour)
	for range 2 {
		_, err = c.Resolve(ctx, "t", "r")
		require.ErrorContains(t, err, "backend down")
	}
	require.Equal(t, 6, next.calls)
}

func ExampleNewDir() {
	dir, _ := os.MkdirTemp("", "secrets")
	defer os.RemoveAll(dir)
	_, _ = secrets.Ensure(dir, "acme", "orders") // dev stack: create on first use

	m := secrets.NewDir(dir)
	list, err := m.Resolve(context.Background(), "acme", "orders")
	fmt.Println(len(list), err, list[0])
	_, err = m.Resolve(context.Background(), "other-tenant", "orders")
	fmt.Println(errors.Is(err, secrets.ErrNotFound))
	// Output:
	// 1 <nil> whsec_…redacted
	// true
}
