package streams_test

import (
	"fmt"
	"strings"
	"testing"
	"unicode"

	"github.com/stretchr/testify/require"

	"github.com/triggerflow/triggerflow/streams"
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
		{"2 KB key", "users", long, "TRIGGERS.acme.users." + streams.HashToken(mustEncode(t, long)), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, err := streams.BuildSubject("TRIGGERS", "acme", tc.collection, tc.docKey)
			require.NoError(t, err)
			require.Equal(t, tc.want, s.Name)
			require.Equal(t, tc.hashed, s.Hashed)

			p, err := streams.ParseSubject(s.Name)
			require.NoError(t, err)
			require.Equal(t, "TRIGGERS", p.Stream)
			require.Equal(t, "acme", p.Tenant)
			require.Equal(t, tc.collection, p.Collection)
			if !tc.hashed {
				k, err := streams.DecodeDocKey(p.DocKeyToken)
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
	fits := strings.Repeat("a", (streams.MaxSubjectBytes-prefix)/4*3)
	s, err := streams.BuildSubject("TRIGGERS", "acme", "users", fits)
	require.NoError(t, err)
	require.False(t, s.Hashed)
	require.LessOrEqual(t, len(s.Name), streams.MaxSubjectBytes)

	s, err = streams.BuildSubject("TRIGGERS", "acme", "users", fits+"a")
	require.NoError(t, err)
	require.True(t, s.Hashed)
	require.Len(t, s.Name, prefix+32)
}

// keyOfEncodedLen returns a docKey whose base64url encoding (no padding)
// is encLen characters. encLen%4 == 1 is impossible and fails the test.
func keyOfEncodedLen(t *testing.T, encLen int) string {
	t.Helper()
	tail := map[int]int{0: 0, 2: 1, 3: 2}
	extra, ok := tail[encLen%4]
	require.True(t, ok, "no docKey encodes to %d characters", encLen)
	k := strings.Repeat("k", encLen/4*3+extra)
	require.Len(t, mustEncode(t, k), encLen)
	return k
}

// fill returns n bytes of token characters.
func fill(n int) string { return strings.Repeat("c", n) }

// TestSubjectLengthBoundary builds subjects whose plain form — stream,
// tenant, collection tokens and the base64url docKey — is 1023, 1024, 1025
// and 1026 bytes, reaching the length through each part in turn. Up to
// MaxSubjectBytes the subject is the plain one; one byte more and the
// docKey token is hashed. No subject is ever longer than MaxSubjectBytes.
func TestSubjectLengthBoundary(t *testing.T) {
	t.Parallel()
	require.Equal(t, 1024, streams.MaxSubjectBytes)
	const fixed = len("TRIGGERS...") // the dots around tenant and collection
	shapes := []struct {
		name string
		// parts returns tenant, collection and docKey for a plain subject
		// of plainLen bytes.
		parts func(t *testing.T, plainLen int) (tenant, collection, docKey string)
	}{
		{"long docKey", func(t *testing.T, n int) (string, string, string) {
			collection := "users"
			enc := n - fixed - len("acme") - len(collection)
			if enc%4 == 1 { // no key encodes to 4k+1 characters: shift a byte
				collection, enc = "user", enc+1
			}
			return "acme", collection, keyOfEncodedLen(t, enc)
		}},
		{"long collection, encoded key 4k", func(t *testing.T, n int) (string, string, string) {
			return "acme", fill(n - fixed - len("acme") - 1000), keyOfEncodedLen(t, 1000)
		}},
		{"long collection, encoded key 4k+2", func(t *testing.T, n int) (string, string, string) {
			return "acme", fill(n - fixed - len("acme") - 1002), keyOfEncodedLen(t, 1002)
		}},
		{"long collection, encoded key 4k+3", func(t *testing.T, n int) (string, string, string) {
			return "acme", fill(n - fixed - len("acme") - 1003), keyOfEncodedLen(t, 1003)
		}},
		{"long collection, short key", func(t *testing.T, n int) (string, string, string) {
			// 40 characters: long enough that the hashed subject fits.
			return "acme", fill(n - fixed - len("acme") - 40), keyOfEncodedLen(t, 40)
		}},
		{"long tenant", func(t *testing.T, n int) (string, string, string) {
			return fill(n - fixed - len("users") - 500), "users", keyOfEncodedLen(t, 500)
		}},
		{"nested collection", func(t *testing.T, n int) (string, string, string) {
			// "a/b/…/x" has one token per segment: the '/' become '.'.
			return "acme", "chats/42/members/" + fill(n-fixed-len("acme")-len("chats.42.members.")-600), keyOfEncodedLen(t, 600)
		}},
	}
	for _, plainLen := range []int{1023, 1024, 1025, 1026} {
		for _, sh := range shapes {
			t.Run(fmt.Sprintf("%d/%s", plainLen, sh.name), func(t *testing.T) {
				t.Parallel()
				tenant, collection, docKey := sh.parts(t, plainLen)
				enc := mustEncode(t, docKey)
				prefix := "TRIGGERS." + tenant + "." + strings.ReplaceAll(collection, "/", ".") + "."
				require.Len(t, prefix+enc, plainLen, "the inputs make a plain subject of the intended length")

				s, err := streams.BuildSubject("TRIGGERS", tenant, collection, docKey)
				require.NoError(t, err)
				require.LessOrEqual(t, len(s.Name), streams.MaxSubjectBytes, "subject of %d bytes", len(s.Name))
				if plainLen <= streams.MaxSubjectBytes {
					require.False(t, s.Hashed, "a %d-byte plain subject fits", plainLen)
					require.Equal(t, prefix+enc, s.Name)
				} else {
					require.True(t, s.Hashed, "a %d-byte plain subject must be hashed", plainLen)
					require.Equal(t, prefix+streams.HashToken(enc), s.Name)
				}

				p, err := streams.ParseSubject(s.Name)
				require.NoError(t, err)
				require.Equal(t, tenant, p.Tenant)
				require.Equal(t, collection, p.Collection)
			})
		}
	}
}

// TestHashedSubjectLengthBoundary: when even the hashed subject — prefix
// plus the 32-character hash token — would be 1025 bytes or more, the
// subject is refused rather than built too long.
func TestHashedSubjectLengthBoundary(t *testing.T) {
	t.Parallel()
	docKey := strings.Repeat("k", 2048) // never fits unhashed
	for _, hashedLen := range []int{1023, 1024, 1025, 1026} {
		t.Run(fmt.Sprint(hashedLen), func(t *testing.T) {
			t.Parallel()
			collection := fill(hashedLen - len("TRIGGERS.acme..") - 32)
			s, err := streams.BuildSubject("TRIGGERS", "acme", collection, docKey)
			if hashedLen > streams.MaxSubjectBytes {
				require.ErrorIs(t, err, streams.ErrSubjectTooLong)
				require.Empty(t, s.Name)
				return
			}
			require.NoError(t, err)
			require.True(t, s.Hashed)
			require.Len(t, s.Name, hashedLen)
			require.Equal(t, "TRIGGERS.acme."+collection+"."+streams.HashToken(mustEncode(t, docKey)), s.Name)
		})
	}
}

// TestSubjectLengthSweep is the property behind the two boundary tests,
// checked for every prefix length from the shortest to past the limit,
// each with the docKeys that bring the plain subject near the limit: a
// subject is never longer than MaxSubjectBytes, is hashed exactly when the
// plain one would not fit, and is refused exactly when the hashed one
// would not fit either.
func TestSubjectLengthSweep(t *testing.T) {
	t.Parallel()
	const lo, hi = streams.MaxSubjectBytes - 8, streams.MaxSubjectBytes + 8
	seen := map[int]bool{}
	refused := 0
	for c := 1; len("TRIGGERS.acme..")+c < hi; c++ {
		collection := fill(c)
		prefixLen := len("TRIGGERS.acme..") + c
		// Key lengths whose encoding ((4n+2)/3 characters) lands in [lo, hi].
		for n := max(1, (lo-prefixLen)*3/4-1); (4*n+2)/3+prefixLen <= hi; n++ {
			plainLen := prefixLen + (4*n+2)/3
			if plainLen < lo {
				continue
			}
			seen[plainLen] = true
			s, err := streams.BuildSubject("TRIGGERS", "acme", collection, strings.Repeat("k", n))
			if plainLen > streams.MaxSubjectBytes && prefixLen+32 > streams.MaxSubjectBytes {
				require.ErrorIs(t, err, streams.ErrSubjectTooLong, "prefix %d, key %d", prefixLen, n)
				refused++
				continue
			}
			require.NoError(t, err, "prefix %d, key %d", prefixLen, n)
			require.LessOrEqual(t, len(s.Name), streams.MaxSubjectBytes, "prefix %d, key %d", prefixLen, n)
			require.Equal(t, plainLen > streams.MaxSubjectBytes, s.Hashed, "prefix %d, key %d: plain subject %d bytes", prefixLen, n, plainLen)
		}
	}
	for l := lo; l <= hi; l++ {
		require.True(t, seen[l], "the sweep never built a %d-byte plain subject", l)
	}
	require.Positive(t, refused, "the sweep reached prefixes too long to hash")
}

func TestBuildSubjectRejects(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, stream, tenant, collection, docKey string
		err                                      error
	}{
		{"empty key", "TRIGGERS", "acme", "users", "", streams.ErrEmptyDocKey},
		{"dotted tenant", "TRIGGERS", "ac.me", "users", "k", streams.ErrInvalidTenant},
		{"wildcard tenant", "TRIGGERS", "*", "users", "k", streams.ErrInvalidTenant},
		{"empty segment", "TRIGGERS", "acme", "a//b", "k", streams.ErrInvalidCollPath},
		{"glob collection", "TRIGGERS", "acme", "a/*", "k", streams.ErrInvalidCollPath},
		{"space collection", "TRIGGERS", "acme", "a b", "k", streams.ErrInvalidCollPath},
		{"bad stream", "TRI.GGERS", "acme", "users", "k", streams.ErrInvalidStream},
		{"prefix too long", "TRIGGERS", "acme", strings.Repeat("c", 1000), strings.Repeat("k", 30), streams.ErrSubjectTooLong},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := streams.BuildSubject(tc.stream, tc.tenant, tc.collection, tc.docKey)
			require.ErrorIs(t, err, tc.err)
		})
	}
}

func TestDecodeDocKeyRejects(t *testing.T) {
	t.Parallel()
	for _, tok := range []string{"", "dTE=", "a+b/", "a", "dTF"} {
		_, err := streams.DecodeDocKey(tok)
		require.Error(t, err, tok)
	}
}

func TestParseSubjectRejects(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"", "TRIGGERS", "TRIGGERS.acme.users", "TRIGGERS.acme..dTE", "TRIGGERS.acme.users.*", "TRIGGERS.acme.users.>", "TRIGGERS.ac me.users.dTE", strings.Repeat("a.", 600) + "a"} {
		_, err := streams.ParseSubject(s)
		require.Error(t, err, s)
	}
}

func mustEncode(t *testing.T, k string) string {
	t.Helper()
	enc, err := streams.EncodeDocKey(k)
	require.NoError(t, err)
	return enc
}

// FuzzDocKeyRoundTrip: every non-empty docKey survives encode → decode.
func FuzzDocKeyRoundTrip(f *testing.F) {
	for _, k := range []string{"u1", "a.b", "*", ">", "a b", "ключ", "\x00\xff", strings.Repeat("z", 2000)} {
		f.Add(k)
	}
	f.Fuzz(func(t *testing.T, k string) {
		enc, err := streams.EncodeDocKey(k)
		if k == "" {
			require.ErrorIs(t, err, streams.ErrEmptyDocKey)
			return
		}
		require.NoError(t, err)
		got, err := streams.DecodeDocKey(enc)
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
	// Plain subjects of 1023–1026 bytes: the last fits, the next two must
	// be hashed (the prefix is 15+len(collection), the key encodes to 1000).
	for _, plainLen := range []int{1023, 1024, 1025, 1026} {
		f.Add("acme", strings.Repeat("c", plainLen-len("TRIGGERS.acme..")-1000), strings.Repeat("k", 750))
	}
	f.Fuzz(func(t *testing.T, tenant, collection, docKey string) {
		s, err := streams.BuildSubject("TRIGGERS", tenant, collection, docKey)
		if err != nil {
			return // rejected inputs are covered by the table tests
		}
		require.LessOrEqual(t, len(s.Name), streams.MaxSubjectBytes)
		for _, tok := range strings.Split(s.Name, ".") {
			require.NotEmpty(t, tok)
			require.False(t, strings.ContainsAny(tok, "*>"), tok)
			require.False(t, strings.ContainsFunc(tok, unicode.IsSpace), tok)
		}
		p, err := streams.ParseSubject(s.Name)
		require.NoError(t, err)
		require.Equal(t, tenant, p.Tenant)
		require.Equal(t, collection, p.Collection)

		enc, err := streams.EncodeDocKey(docKey)
		require.NoError(t, err)
		plainLen := len("TRIGGERS."+tenant+"."+collection+".") + len(enc)
		require.Equal(t, plainLen > streams.MaxSubjectBytes, s.Hashed)
		if s.Hashed {
			require.Equal(t, streams.HashToken(enc), p.DocKeyToken)
		} else {
			k, err := streams.DecodeDocKey(p.DocKeyToken)
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
				if _, err := streams.BuildSubject("TRIGGERS", "acme", "chats/42/members", bc.key); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
