// Package secrets resolves the webhook signing secrets of a tenant.
//
// Every lookup is tenant-scoped by construction: a reference (a trigger's
// secretsRef) is only ever looked up inside its tenant's namespace, and both
// names are restricted to letters, digits, '-', '_' (and '.' inside refs) so
// a crafted ref cannot walk into another tenant's namespace.
//
// A (tenant, ref) pair holds one or more secrets; all are active, so during
// a rotation the worker signs with every one and receivers holding either
// the new or the old secret accept the delivery. Every backend stores them
// in the same text format (see [ParseList]):
//
//	# comment lines and blank lines are ignored
//	whsec_<base64 of the newest key>
//	whsec_<base64 of the previous key>   # kept until receivers switch
//
// Errors name the tenant and ref, never a secret value.
package secrets

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/triggerflow/triggerflow/signature"
)

// Manager resolves the active secrets of a reference within a tenant.
type Manager interface {
	// Resolve returns every active secret of ref in tenant's namespace,
	// newest first. It returns an error wrapping ErrNotFound when there is
	// none.
	Resolve(ctx context.Context, tenant, ref string) ([]signature.Secret, error)
}

var (
	// ErrNotFound: the reference does not exist in the tenant's namespace
	// or holds no active secret.
	ErrNotFound = errors.New("secrets: not found")
	// ErrInvalidName: a tenant or ref is outside the allowed charset; it is
	// refused before any lookup.
	ErrInvalidName = errors.New("secrets: invalid tenant or ref")
	// ErrMalformed: stored secrets do not parse. The wrapping error says
	// where (line and entry), never the value.
	ErrMalformed = errors.New("secrets: malformed secret list")
)

// maxNameLength matches the trigger validator's limits for tenants and
// secret references.
const maxNameLength = 128

// maxListBytes bounds what a backend will read for one reference; a list of
// a handful of secrets is well under a kilobyte.
const maxListBytes = 64 << 10

// ValidateTenant reports whether tenant is a usable namespace: 1–128
// letters, digits, '-' and '_'.
func ValidateTenant(tenant string) error {
	if reason := checkName(tenant, false); reason != "" {
		return fmt.Errorf("%w: tenant %q %s", ErrInvalidName, tenant, reason)
	}
	return nil
}

// ValidateRef reports whether ref is a usable reference: 1–128 letters,
// digits, '-', '_' and '.', not starting or ending with '.' and without
// "..", so that it is a plain file name and a valid key-value key suffix.
func ValidateRef(ref string) error {
	if reason := checkName(ref, true); reason != "" {
		return fmt.Errorf("%w: ref %q %s", ErrInvalidName, ref, reason)
	}
	return nil
}

func validate(tenant, ref string) error {
	if err := ValidateTenant(tenant); err != nil {
		return err
	}
	return ValidateRef(ref)
}

func checkName(s string, dots bool) string {
	switch {
	case s == "":
		return "is empty"
	case len(s) > maxNameLength:
		return fmt.Sprintf("is %d bytes long, the limit is %d", len(s), maxNameLength)
	}
	for _, c := range []byte(s) {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
		if !ok && !(dots && c == '.') {
			if dots {
				return fmt.Sprintf("contains %q: only letters, digits, '-', '_' and '.' are allowed", c)
			}
			return fmt.Sprintf("contains %q: only letters, digits, '-' and '_' are allowed", c)
		}
	}
	if dots && (s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, "..")) {
		return "must not start or end with '.' or contain \"..\""
	}
	return ""
}

// ParseList parses a secret list: entries separated by newlines, spaces or
// commas, each "whsec_<base64>"; '#' starts a comment that runs to the end
// of the line. Duplicates are dropped, order is kept. An empty list is not
// an error here (the backends turn it into ErrNotFound).
func ParseList(data []byte) ([]signature.Secret, error) {
	var out []signature.Secret
	line := 0
	for raw := range bytes.SplitSeq(data, []byte("\n")) {
		line++
		if i := bytes.IndexByte(raw, '#'); i >= 0 {
			raw = raw[:i] // '#' is not in the base64 alphabet
		}
		entry := 0
		for _, tok := range strings.FieldsFunc(string(raw), func(r rune) bool {
			return r == ',' || r == ' ' || r == '\t' || r == '\r' || r == '\v' || r == '\f'
		}) {
			entry++
			s, err := signature.ParseSecret(tok)
			if err != nil {
				// signature errors never contain the value.
				return nil, fmt.Errorf("%w: line %d, entry %d: %w", ErrMalformed, line, entry, err)
			}
			if !containsSecret(out, s) {
				out = append(out, s)
			}
		}
	}
	return out, nil
}

func containsSecret(list []signature.Secret, s signature.Secret) bool {
	for _, x := range list {
		if bytes.Equal(x, s) {
			return true
		}
	}
	return false
}

// parseFor parses a stored list for (tenant, ref), mapping "no entries" to
// ErrNotFound: a list whose every line is commented out is a revoked
// reference, and deliveries must not go out unsigned.
func parseFor(data []byte, tenant, ref, where string) ([]signature.Secret, error) {
	if len(data) > maxListBytes {
		return nil, fmt.Errorf("%w: tenant %q ref %q: %s is %d bytes, the limit is %d", ErrMalformed, tenant, ref, where, len(data), maxListBytes)
	}
	list, err := ParseList(data)
	if err != nil {
		return nil, fmt.Errorf("tenant %q ref %q (%s): %w", tenant, ref, where, err)
	}
	if len(list) == 0 {
		return nil, fmt.Errorf("%w: tenant %q ref %q: %s holds no active secret", ErrNotFound, tenant, ref, where)
	}
	return list, nil
}

func notFound(tenant, ref, where string) error {
	return fmt.Errorf("%w: tenant %q ref %q (%s)", ErrNotFound, tenant, ref, where)
}
