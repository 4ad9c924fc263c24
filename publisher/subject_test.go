package publisher_test

import (
	"strings"
	"testing"
	"unicode"

	"github.com/stretchr/testify/require"

	"github.com/triggerflow/triggerflow/publisher"
)

func TestBuildSubjectGolden(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("k", 2048)
	for _, tc := range []struct {
		name, collection, docKey, want string
		hashed                         bool
	}{
		{"plain", "users", "u1", "TRIGGERS.acme.users.dTE", false},
		{"dot", "users", "a.b", "TRIGGERS.acme.users.YS5i", false},
		{"star", "users", "*", "TRIGGERS.acme.users.Kg", false},
		{"gt", "users", ">", "TRIGGERS.acme.users.Pg", false},
		{"space", "users", "a b", "TRIGGERS.acme.users.YSBi", false},
		{"slash", "users", "a/b", "TRIGGERS.acme.users.YS9i", false},
		{"unicode", "users", "ключ✓", "TRIGGERS.acme.users.0LrQu9GO0YfinJM", false},
		{"one byte", "users", "x", "TRIGGERS.acme.users.eA", false},
		{"nested collection", "chats/42/members", "m-1", "TRIGGERS.acme.chats.42.members.bS0x", false},
		{"2 KB key", "users", long, "TRIGGERS.acme.users." + publisher.HashToken(mustEncode(t, long)), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, err := publisher.BuildSubject("TRIGGERS", "acme", tc.collection, tc.docKey)
			require.NoError(t, err)
			require.Equal(t, tc.want, s.Name)
			require.Equal(t, tc.hashed, s.Hashed)

			p, err := publisher.ParseSubject(s.Name)
			require.NoError(t, err)
			require.Equal(t, "TRIGGERS", p.Stream)
			require.Equal(t, "acme", p.Tenant)
			require.Equal(t, tc.collection, p.Collection)
			if !tc.hashed {
				k, err := publisher.DecodeDocKey(p.DocKeyToken)
				require.NoError(t, err)
				require.Equal(t, tc.docKey, k)
			}
		})
	}
}

func TestHashBoundary(t *testing.T) {
	t.Parallel()
	prefix := len("TRIGGERS.acme.users.")
	// 3 key bytes encode to 4 characters, so this key makes the subject
	// exactly 1024 bytes and the next longer one does not fit.
	fits := strings.Repeat("a", (publisher.MaxSubjectBytes-prefix)/4*3)
	s, err := publisher.BuildSubject("TRIGGERS", "acme", "users", fits)
	require.NoError(t, err)
	require.False(t, s.Hashed)
	require.LessOrEqual(t, len(s.Name), publisher.MaxSubjectBytes)

	s, err = publisher.BuildSubject("TRIGGERS", "acme", "users", fits+"a")
	require.NoError(t, err)
	require.True(t, s.Hashed)
	require.Len(t, s.Name, prefix+32)
}

func TestBuildSubjectRejects(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, stream, tenant, collection, docKey string
		err                                      error
	}{
		{"empty key", "TRIGGERS", "acme", "users", "", publisher.ErrEmptyDocKey},
		{"dotted tenant", "TRIGGERS", "ac.me", "users", "k", publisher.ErrInvalidTenant},
		{"wildcard tenant", "TRIGGERS", "*", "users", "k", publisher.ErrInvalidTenant},
		{"empty segment", "TRIGGERS", "acme", "a//b", "k", publisher.ErrInvalidCollPath},
		{"glob collection", "TRIGGERS", "acme", "a/*", "k", publisher.ErrInvalidCollPath},
		{"space collection", "TRIGGERS", "acme", "a b", "k", publisher.ErrInvalidCollPath},
		{"bad stream", "TRI.GGERS", "acme", "users", "k", publisher.ErrInvalidStream},
		{"prefix too long", "TRIGGERS", "acme", strings.Repeat("c", 1000), strings.Repeat("k", 30), publisher.ErrSubjectTooLong},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := publisher.BuildSubject(tc.stream, tc.tenant, tc.collection, tc.docKey)
			require.ErrorIs(t, err, tc.err)
		})
	}
}

func TestDecodeDocKeyRejects(t *testing.T) {
	t.Parallel()
	for _, tok := range []string{"", "dTE=", "a+b/", "a", "dTF"} {
		_, err := publisher.DecodeDocKey(tok)
		require.Error(t, err, tok)
	}
}

func TestParseSubjectRejects(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"", "TRIGGERS", "TRIGGERS.acme.users", "TRIGGERS.acme..dTE", "TRIGGERS.acme.users.*", "TRIGGERS.acme.users.>", "TRIGGERS.ac me.users.dTE", strings.Repeat("a.", 600) + "a"} {
		_, err := publisher.ParseSubject(s)
		require.Error(t, err, s)
	}
}

func mustEncode(t *testing.T, k string) string {
	t.Helper()
	enc, err := publisher.EncodeDocKey(k)
	require.NoError(t, err)
	return enc
}

// FuzzDocKeyRoundTrip: every non-empty docKey survives encode → decode.
func FuzzDocKeyRoundTrip(f *testing.F) {
	for _, k := range []string{"u1", "a.b", "*", ">", "a b", "ключ", "\x00\xff", strings.Repeat("z", 2000)} {
		f.Add(k)
	}
	f.Fuzz(func(t *testing.T, k string) {
		enc, err := publisher.EncodeDocKey(k)
		if k == "" {
			require.ErrorIs(t, err, publisher.ErrEmptyDocKey)
			return
		}
		require.NoError(t, err)
		got, err := publisher.DecodeDocKey(enc)
		require.NoError(t, err)
		require.Equal(t, k, got)
	})
}

// FuzzSubjectSafety: every subject BuildSubject returns is within the limit,
// made of safe tokens, parses back to its inputs, and is hashed exactly when
// the plain subject would not fit.
func FuzzSubjectSafety(f *testing.F) {
	f.Add("acme", "users", "u1")
	f.Add("t_1", "chats/42/members", "a.b*>c d")
	f.Add("acme", "users", strings.Repeat("x", 1500))
	f.Add("a", "b", "\n")
	f.Fuzz(func(t *testing.T, tenant, collection, docKey string) {
		s, err := publisher.BuildSubject("TRIGGERS", tenant, collection, docKey)
		if err != nil {
			return // rejected inputs are covered by the table tests
		}
		require.LessOrEqual(t, len(s.Name), publisher.MaxSubjectBytes)
		for _, tok := range strings.Split(s.Name, ".") {
			require.NotEmpty(t, tok)
			require.False(t, strings.ContainsAny(tok, "*>"), tok)
			require.False(t, strings.ContainsFunc(tok, unicode.IsSpace), tok)
		}
		p, err := publisher.ParseSubject(s.Name)
		require.NoError(t, err)
		require.Equal(t, tenant, p.Tenant)
		require.Equal(t, collection, p.Collection)

		enc, err := publisher.EncodeDocKey(docKey)
		require.NoError(t, err)
		plainLen := len("TRIGGERS."+tenant+"."+collection+".") + len(enc)
		require.Equal(t, plainLen > publisher.MaxSubjectBytes, s.Hashed)
		if s.Hashed {
			require.Equal(t, publisher.HashToken(enc), p.DocKeyToken)
		} else {
			k, err := publisher.DecodeDocKey(p.DocKeyToken)
			require.NoError(t, err)
			require.Equal(t, docKey, k)
		}
	})
}

func BenchmarkBuildSubject(b *testing.B) {
	for _, bc := range []struct{ name, key string }{
		{"short", "user-123456"},
		{"hashed-2KB", strings.Repeat("k", 2048)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := publisher.BuildSubject("TRIGGERS", "acme", "chats/42/members", bc.key); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
