package evaluator

import (
	"path"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestGlobAgreesWithPathMatch(t *testing.T) {
	t.Parallel()
	patterns := []string{
		"users", "users/*", "*", "*/*", "chats/*/members", "*/42/*",
		"user*", "*s", "u*r*s", "a*b*c", "**", "a**b", "pre*/x", "*/*/*/*",
		"a?c", "[ab]/x", `a\*b`,
	}
	names := []string{
		"users", "user", "us", "users/1", "users/1/2", "chats/42/members", "chats/42/member",
		"chats//members", "x/42/y", "a", "ab", "abc", "aXbYc", "acb", "aXcYb", "pre/x", "prefix/x",
		"a/b/c/d", "a/b/c", "", "/", "users/", "/users", "a*b", "b/x",
	}
	for _, p := range patterns {
		g, err := compileGlob(p)
		require.NoError(t, err, p)
		for _, n := range names {
			want, _ := path.Match(p, n)
			require.Equal(t, want, g.match(n), "pattern %q, collection %q", p, n)
		}
	}
}

func TestCompileGlobRejectsBadPattern(t *testing.T) {
	t.Parallel()
	_, err := compileGlob("users/[")
	require.ErrorIs(t, err, path.ErrBadPattern)
}

func FuzzGlob(f *testing.F) {
	for _, s := range [][2]string{
		{"chats/*/members", "chats/42/members"}, {"a*b*c", "aXbYc"}, {"*", ""},
		{"u*r*s", "users"}, {"*/*", "a/"}, {"a?", "a/"}, {"[^a]", "/"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pattern, collection string) {
		g, err := compileGlob(pattern)
		if _, bad := path.Match(pattern, ""); bad != nil {
			require.Error(t, err)
			return
		}
		require.NoError(t, err)
		ok, err := path.Match(pattern, collection)
		if err != nil {
			// path.Match may find a malformed tail only when the name
			// reaches it; such a pattern never matches.
			ok = false
		}
		require.Equal(t, ok, g.match(collection), "pattern %q, collection %q", pattern, collection)
	})
}
