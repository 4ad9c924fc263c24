package secrets

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/triggerflow/triggerflow/signature"
)

// DefaultEnvPrefix starts the variable names of the env backend.
const DefaultEnvPrefix = "TRIGGERFLOW_SECRET_"

// Env is the environment-variable backend: the secrets of (tenant, ref) are
// the value of EnvName(prefix, tenant, ref), a ParseList list (usually
// space- or comma-separated on one line).
type Env struct {
	prefix string
	lookup func(string) (string, bool)
}

var _ Manager = (*Env)(nil)

// NewEnv returns the env backend. An empty prefix means DefaultEnvPrefix;
// a nil lookup means os.LookupEnv (tests inject a map).
func NewEnv(prefix string, lookup func(string) (string, bool)) *Env {
	prefix = cmp.Or(prefix, DefaultEnvPrefix)
	if lookup == nil {
		lookup = os.LookupEnv
	}
	return &Env{prefix: prefix, lookup: lookup}
}

// EnvName is the variable holding (tenant, ref): prefix, then tenant and
// ref in upper snake case joined by a double underscore, e.g. tenant
// "acme-co", ref "orders.v2" → TRIGGERFLOW_SECRET_ACME_CO__ORDERS_V2.
//
// The double underscore keeps the mapping unambiguous where a single one
// would let tenant "acme" use ref "co_orders" to read tenant "acme-co"'s
// "orders". For the same reason names with a separator ('-', '_', '.') at
// either end or two in a row are refused. Tenants whose names differ only
// in case or in '-' versus '_' would share variables; tenant names are
// chosen by the operator, who must not create such pairs when using this
// backend.
func EnvName(prefix, tenant, ref string) (string, error) {
	if err := validate(tenant, ref); err != nil {
		return "", err
	}
	t, err := snake(tenant)
	if err != nil {
		return "", fmt.Errorf("%w: tenant %q %s", ErrInvalidName, tenant, err)
	}
	r, err := snake(ref)
	if err != nil {
		return "", fmt.Errorf("%w: ref %q %s", ErrInvalidName, ref, err)
	}
	return prefix + t + "__" + r, nil
}

func snake(s string) (string, error) {
	var b strings.Builder
	b.Grow(len(s))
	prevSep := true // refuses a leading separator
	for _, c := range []byte(s) {
		switch {
		case c == '-' || c == '_' || c == '.':
			if prevSep {
				return "", fmt.Errorf("cannot be named unambiguously in an environment variable: separators ('-', '_', '.') at the start or doubled")
			}
			b.WriteByte('_')
			prevSep = true
		case c >= 'a' && c <= 'z':
			b.WriteByte(c - 'a' + 'A')
			prevSep = false
		default:
			b.WriteByte(c)
			prevSep = false
		}
	}
	if prevSep {
		return "", fmt.Errorf("cannot be named unambiguously in an environment variable: ends with a separator ('-', '_', '.')")
	}
	return b.String(), nil
}

// Resolve reads the variable EnvName(prefix, tenant, ref).
func (e *Env) Resolve(ctx context.Context, tenant, ref string) ([]signature.Secret, error) {
	name, err := EnvName(e.prefix, tenant, ref)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	where := "environment variable " + name
	v, ok := e.lookup(name)
	if !ok {
		return nil, notFound(tenant, ref, where)
	}
	return parseFor([]byte(v), tenant, ref, where)
}
