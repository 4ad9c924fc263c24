package ingest_test

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"

	"github.com/triggerflow/triggerflow/ingest"
)

func TestWorkflowIDReadable(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		tenant, trigger, collection, docKey string
		want                                string
	}{
		{"acme", "order-paid", "orders", "o-17", "tf/acme/order-paid/orders/o-17"},
		{"acme", "t.v2", "chats/42/members", "u-1", "tf/acme/t.v2/chats/42/members/u-1"},
		{"acme", "t", "orders", "a/b", "tf/acme/t/orders/a%2Fb"},
		{"acme", "t", "orders", "50%", "tf/acme/t/orders/50%25"},
		{"acme", "t", "orders", "two words", "tf/acme/t/orders/two%20words"},
		{"acme", "t", "orders", "line\nbreak", "tf/acme/t/orders/line%0Abreak"},
		{"acme", "t", "orders", "grüße", "tf/acme/t/orders/grüße"},
		{"acme", "t", "orders", "bad\xffutf8", "tf/acme/t/orders/bad%FFutf8"},
		{"acme", "t", "orders", "zero\u200bwidth", "tf/acme/t/orders/zero%E2%80%8Bwidth"},
		{"a/b", "c/d", "e", "f", "tf/a%2Fb/c%2Fd/e/f"},
		{"", "", "", "", "tf////"},
	} {
		got := ingest.WorkflowID(tc.tenant, tc.trigger, tc.collection, tc.docKey)
		require.Equal(t, tc.want, got)
		parts, err := parseWorkflowID(got)
		require.NoError(t, err, got)
		require.Equal(t, [4]string{tc.tenant, tc.trigger, tc.collection, tc.docKey}, parts)
	}
}

func TestWorkflowIDDistinguishesSeparators(t *testing.T) {
	t.Parallel()
	tuples := [][4]string{
		{"a", "b", "c/d", "e"},
		{"a", "b", "c", "d/e"},
		{"a", "b/c", "d", "e"},
		{"a/b", "c", "d", "e"},
		{"a", "b", "c", "d%2Fe"},
		{"a", "b", "c%2Fd", "e"},
		{"a", "b", "c", "d e"},
		{"a", "b", "c", "d%20e"},
		// A readable ID can never look like a hashed one.
		{"tfh", "x", "y", strings.Repeat("0", 64)},
		{"x", "y", "h", strings.Repeat("a", 64)},
	}
	seen := map[string][4]string{}
	for _, tu := range tuples {
		id := ingest.WorkflowID(tu[0], tu[1], tu[2], tu[3])
		if prev, dup := seen[id]; dup {
			t.Fatalf("%v and %v share workflow ID %q", prev, tu, id)
		}
		seen[id] = tu
	}
}

func TestWorkflowIDHashedWhenLong(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("k", 2000)
	id := ingest.WorkflowID("acme", "order-paid", "orders", long)
	require.LessOrEqual(t, len(id), ingest.MaxWorkflowIDBytes)
	require.True(t, strings.HasPrefix(id, "tfh/acme/order-paid/"), id)
	require.Len(t, strings.TrimPrefix(id, "tfh/acme/order-paid/"), 64)

	other := ingest.WorkflowID("acme", "order-paid", "orders", long+"x")
	require.NotEqual(t, id, other)
	require.Equal(t, id, ingest.WorkflowID("acme", "order-paid", "orders", long), "deterministic")

	// Just under the limit stays readable; escaping counts toward it.
	prefix := len("tf/acme/order-paid/orders/")
	fits := strings.Repeat("k", ingest.MaxWorkflowIDBytes-prefix)
	require.Equal(t, "tf/acme/order-paid/orders/"+fits, ingest.WorkflowID("acme", "order-paid", "orders", fits))
	escaped := strings.Repeat(" ", (ingest.MaxWorkflowIDBytes-prefix)/3+1)
	require.True(t, strings.HasPrefix(ingest.WorkflowID("acme", "order-paid", "orders", escaped), "tfh/"))

	// A tenant too long to show falls back to the bare hash.
	bare := ingest.WorkflowID(strings.Repeat("t", 900), "x", "y", "z")
	require.Len(t, bare, len("tfh/")+64)
}

func TestSearchKeyword(t *testing.T) {
	t.Parallel()
	require.Equal(t, "o-17", ingest.SearchKeyword("o-17"))
	fits := strings.Repeat("k", ingest.MaxKeywordBytes)
	require.Equal(t, fits, ingest.SearchKeyword(fits))
	long := ingest.SearchKeyword(fits + "k")
	require.True(t, strings.HasPrefix(long, "sha256:"), long)
	require.LessOrEqual(t, len(long), ingest.MaxKeywordBytes)
}

// FuzzWorkflowIDInjective checks that an ID decodes back to exactly its
// tuple (readable form), which makes WorkflowID injective on that form;
// that the hashed form is only used past the limit; that IDs are valid
// UTF-8 within MaxWorkflowIDBytes; and, directly, that two different
// tuples get different IDs.
func FuzzWorkflowIDInjective(f *testing.F) {
	f.Add("acme", "order-paid", "orders", "o-17", "acme", "order-paid", "orders", "o-18")
	f.Add("a", "b", "c/d", "e", "a", "b", "c", "d/e")
	f.Add("a", "b", "c", "d%2Fe", "a", "b", "c", "d/e")
	f.Add("a", "b", "c", "\xff", "a", "b", "c", "%FF")
	f.Add("t", "g", "h", strings.Repeat("a", 64), "t", "g", "c", strings.Repeat("x", 900))
	f.Add(strings.Repeat("t", 900), "", "", "", strings.Repeat("t", 901), "", "", "")
	f.Fuzz(func(t *testing.T, a1, b1, c1, d1, a2, b2, c2, d2 string) {
		x, y := [4]string{a1, b1, c1, d1}, [4]string{a2, b2, c2, d2}
		idx, idy := ingest.WorkflowID(a1, b1, c1, d1), ingest.WorkflowID(a2, b2, c2, d2)
		for _, c := range []struct {
			tuple [4]string
			id    string
		}{{x, idx}, {y, idy}} {
			if len(c.id) > ingest.MaxWorkflowIDBytes {
				t.Fatalf("ID of %q is %d bytes", c.tuple, len(c.id))
			}
			if !utf8.ValidString(c.id) {
				t.Fatalf("ID %q is not valid UTF-8", c.id)
			}
			if strings.HasPrefix(c.id, "tfh/") {
				continue
			}
			parts, err := parseWorkflowID(c.id)
			if err != nil {
				t.Fatalf("ID %q of %q does not parse: %v", c.id, c.tuple, err)
			}
			if parts != c.tuple {
				t.Fatalf("ID %q decodes to %q, want %q", c.id, parts, c.tuple)
			}
		}
		if (x == y) != (idx == idy) {
			t.Fatalf("%q -> %q and %q -> %q", x, idx, y, idy)
		}
	})
}

func ExampleWorkflowID() {
	fmt.Println(ingest.WorkflowID("acme", "order-paid", "orders", "o-17"))
	fmt.Println(ingest.WorkflowID("acme", "member-joined", "chats/42/members", "user 7/admin"))
	// Output:
	// tf/acme/order-paid/orders/o-17
	// tf/acme/member-joined/chats/42/members/user%207%2Fadmin
}

// parseWorkflowID inverts the readable form: tenant and trigger end at the
// first two '/', the docKey starts after the last one, and the collection
// is what remains.
func parseWorkflowID(id string) ([4]string, error) {
	var parts [4]string
	rest, ok := strings.CutPrefix(id, "tf/")
	if !ok {
		return parts, errors.New("no tf/ prefix")
	}
	tenant, rest, ok1 := strings.Cut(rest, "/")
	trig, rest, ok2 := strings.Cut(rest, "/")
	i := strings.LastIndexByte(rest, '/')
	if !ok1 || !ok2 || i < 0 {
		return parts, errors.New("fewer than four parts")
	}
	raw := [4]string{tenant, trig, rest[:i], rest[i+1:]}
	for n, s := range raw {
		if n != 2 && strings.Contains(s, "/") {
			return parts, fmt.Errorf("part %d holds a raw '/'", n)
		}
		u, err := unescape(s)
		if err != nil {
			return parts, fmt.Errorf("part %d: %w", n, err)
		}
		parts[n] = u
	}
	return parts, nil
}

func unescape(s string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b.WriteByte(s[i])
			continue
		}
		if i+2 >= len(s) || strings.ToUpper(s[i+1:i+3]) != s[i+1:i+3] {
			return "", fmt.Errorf("bad escape at %d", i)
		}
		v, err := strconv.ParseUint(s[i+1:i+3], 16, 8)
		if err != nil {
			return "", fmt.Errorf("bad escape at %d: %w", i, err)
		}
		b.WriteByte(byte(v))
		i += 2
	}
	return b.String(), nil
}
