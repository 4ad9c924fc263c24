package trigger

import (
	"fmt"
	"maps"
	"net/url"
	"path"
	"slices"
	"strings"

	"github.com/triggerflow/triggerflow/condition"
)

// ReservedHeaders are set by the worker on every delivery; a trigger may not
// set them, or a receiver could be handed a forged signature or identity.
var reservedHeaders = map[string]bool{
	"webhook-id":        true,
	"webhook-timestamp": true,
	"webhook-signature": true,
	"authorization":     true,
	"content-type":      true,
	"content-length":    true,
	"host":              true,
	"transfer-encoding": true,
	"connection":        true,
}

// maxIDLength bounds trigger ids and secret references; they end up in
// workflow ids, search attributes and logs.
const maxIDLength = 128

// maxRetryAttempts keeps a mistyped maxAttempts from retrying for weeks.
const maxRetryAttempts = 1000

// Validator checks trigger sets against the rules of one tenant scope.
type Validator struct {
	// scope holds the tenants triggers may belong to; nil accepts any.
	scope    map[string]bool
	limits   Limits
	compiler *condition.Compiler
}

// AllTenants, as the only entry of a scope, accepts every tenant.
const AllTenants = "*"

// NewValidator returns a validator for tenant (empty accepts any valid
// tenant, for tools that check files without a scope). Zero limits take
// their defaults.
func NewValidator(tenant string, limits Limits, compiler *condition.Compiler) (*Validator, error) {
	if tenant == "" {
		return NewScopeValidator(nil, limits, compiler)
	}
	return NewScopeValidator([]string{tenant}, limits, compiler)
}

// NewScopeValidator returns a validator for a watcher serving tenants;
// nil or [AllTenants] accepts any valid tenant.
func NewScopeValidator(tenants []string, limits Limits, compiler *condition.Compiler) (*Validator, error) {
	limits = limits.WithDefaults()
	if compiler == nil {
		var err error
		if compiler, err = condition.NewCompiler(0); err != nil {
			return nil, err
		}
	}
	v := &Validator{limits: limits, compiler: compiler}
	if len(tenants) == 1 && tenants[0] == AllTenants {
		return v, nil
	}
	if len(tenants) > 0 {
		v.scope = make(map[string]bool, len(tenants))
	}
	for _, t := range tenants {
		if reason := checkName(t, limits.MaxTenantLength); reason != "" {
			return nil, fmt.Errorf("%w: tenant scope %q %s", ErrInvalidTriggers, t, reason)
		}
		v.scope[t] = true
	}
	return v, nil
}

// InScope reports whether triggers of tenant are accepted.
func (v *Validator) InScope(tenant string) bool { return v.scope == nil || v.scope[tenant] }

// outOfScope says why a tenant is refused.
func (v *Validator) outOfScope() string {
	names := slices.Sorted(maps.Keys(v.scope))
	if len(names) == 1 {
		return fmt.Sprintf("does not match the engine's tenant scope %q", names[0])
	}
	const show = 5
	if len(names) > show {
		return fmt.Sprintf("is not in the watcher's tenant scope (%s and %d more)", strings.Join(names[:show], ", "), len(names)-show)
	}
	return fmt.Sprintf("is not in the watcher's tenant scope (%s)", strings.Join(names, ", "))
}

// Validate checks every trigger and returns the compiled conditions, index
// for index, or a *ValidationError listing every problem. A nil entry in ts
// is a problem too.
func (v *Validator) Validate(ts []*Trigger) ([]*condition.Program, error) {
	var ps problems
	progs := make([]*condition.Program, len(ts))
	seen := make(map[string]string, len(ts))
	for i, t := range ts {
		if t == nil {
			ps.add(Problem{Reason: fmt.Sprintf("trigger #%d is nil", i)})
			continue
		}
		progs[i] = v.check(t, i, &ps)
		if t.ID == "" {
			continue
		}
		key := t.Tenant + "\x00" + t.ID
		if first, dup := seen[key]; dup {
			ps.add(Problem{File: t.Source, Tenant: t.Tenant, TriggerID: t.ID, Field: "triggerId", Reason: "is defined twice (first at " + orUnknown(first) + ")"})
			continue
		}
		seen[key] = t.Source
	}
	if err := ps.err(); err != nil {
		return nil, err
	}
	return progs, nil
}

func (v *Validator) check(t *Trigger, index int, ps *problems) *condition.Program {
	label := t.ID
	if label == "" {
		label = fmt.Sprintf("#%d", index+1)
	}
	bad := func(field, value, reason string) {
		ps.add(Problem{File: t.Source, Tenant: t.Tenant, TriggerID: label, Field: field, Value: value, Reason: reason})
	}

	if reason := checkID(t.ID); reason != "" {
		bad("triggerId", t.ID, reason)
	}
	if reason := checkName(t.Tenant, v.limits.MaxTenantLength); reason != "" {
		bad("tenant", t.Tenant, reason)
	} else if !v.InScope(t.Tenant) {
		bad("tenant", t.Tenant, v.outOfScope())
	}
	if reason := checkCollectionGlob(t.Collection, v.limits.MaxCollectionLength); reason != "" {
		bad("collection", t.Collection, reason)
	}
	seenEv := map[EventType]bool{}
	for _, e := range t.Events {
		switch {
		case !e.Valid():
			bad("events", string(e), "is not one of create, update, delete")
		case seenEv[e]:
			bad("events", string(e), "is listed twice")
		}
		seenEv[e] = true
	}
	prog, err := v.compiler.Compile(t.Condition)
	if err != nil {
		bad("condition", t.Condition, "does not compile: "+oneLine(err.Error()))
	}
	if reason := checkURL(t.URL); reason != "" {
		bad("url", t.URL, reason)
	}
	v.checkHeaders(t, bad)
	if t.SecretsRef != "" {
		if reason := checkID(t.SecretsRef); reason != "" {
			bad("secretsRef", t.SecretsRef, reason)
		}
	}
	checkRetry(t.RetryPolicy, bad)
	if t.Timeout != 0 && (t.Timeout < v.limits.MinTimeout || t.Timeout > v.limits.MaxTimeout) {
		bad("timeout", t.Timeout.String(), fmt.Sprintf("must be between %s and %s", v.limits.MinTimeout, v.limits.MaxTimeout))
	}
	switch t.OnFailure {
	case "", FailureSkip, FailureBlock:
	default:
		bad("onFailure", string(t.OnFailure), "is not one of skip, block")
	}
	return prog
}

func (v *Validator) checkHeaders(t *Trigger, bad func(field, value, reason string)) {
	total := 0
	for name, val := range t.Headers {
		total += len(name) + len(val)
		field := "headers." + name
		switch {
		case !validHeaderName(name):
			bad(field, name, "is not a valid HTTP header name")
		case reservedHeaders[strings.ToLower(name)]:
			bad(field, name, "is set by the worker and cannot be overridden")
		}
		if strings.ContainsAny(val, "\r\n\x00") {
			bad(field, val, "contains a line break or NUL")
		}
	}
	if total > v.limits.MaxHeaderBytes {
		bad("headers", "", fmt.Sprintf("total %d bytes exceeds the limit of %d", total, v.limits.MaxHeaderBytes))
	}
}

func checkRetry(p *RetryPolicy, bad func(field, value, reason string)) {
	if p == nil {
		return
	}
	if p.MaxAttempts < 0 || p.MaxAttempts > maxRetryAttempts {
		bad("retryPolicy.maxAttempts", fmt.Sprint(p.MaxAttempts), fmt.Sprintf("must be between 1 and %d", maxRetryAttempts))
	}
	if p.Multiplier != 0 && p.Multiplier < 1 {
		bad("retryPolicy.multiplier", fmt.Sprint(p.Multiplier), "must be at least 1")
	}
	eff := p.Merge(DefaultRetryPolicy())
	if eff.InitialBackoff > eff.MaxBackoff {
		bad("retryPolicy.initialBackoff", eff.InitialBackoff.String(), fmt.Sprintf("must not exceed maxBackoff (%s)", eff.MaxBackoff))
	}
}

// TenantProblem says why s is not a valid tenant name of at most max bytes
// (letters, digits, '-' and '_'), or returns "" when it is. The document
// store and the configuration apply the same rule.
func TenantProblem(s string, max int) string { return checkName(s, max) }

// CollectionProblem says why s is not a valid concrete collection path of
// at most max bytes ('/'-separated segments of letters, digits, '-' and
// '_'; no globs), or returns "" when it is.
func CollectionProblem(s string, max int) string { return checkCollection(s, max, false) }

// checkName validates tenants: letters, digits, '-' and '_'.
func checkName(s string, max int) string {
	switch {
	case s == "":
		return "is required"
	case len(s) > max:
		return fmt.Sprintf("is %d characters long, the limit is %d", len(s), max)
	}
	for _, c := range []byte(s) {
		if !nameByte(c) {
			return fmt.Sprintf("contains %q: only letters, digits, '-' and '_' are allowed", c)
		}
	}
	return ""
}

// checkCollectionGlob validates a collection pattern: '/'-separated segments
// of letters, digits, '-', '_', and '*' wildcards (path.Match semantics).
func checkCollectionGlob(s string, max int) string {
	if reason := checkCollection(s, max, true); reason != "" {
		return reason
	}
	if _, err := path.Match(s, ""); err != nil {
		return "is not a valid glob: " + err.Error()
	}
	return ""
}

// checkCollection validates '/'-separated segments, with '*' allowed only
// when glob is set.
func checkCollection(s string, max int, glob bool) string {
	switch {
	case s == "":
		return "is required"
	case len(s) > max:
		return fmt.Sprintf("is %d characters long, the limit is %d", len(s), max)
	}
	for seg := range strings.SplitSeq(s, "/") {
		if seg == "" {
			return "has an empty segment: segments are separated by a single '/', with none at either end"
		}
		for _, c := range []byte(seg) {
			switch {
			case nameByte(c):
			case c == '*' && glob:
			case glob:
				return fmt.Sprintf("contains %q: only letters, digits, '-', '_', '/' and '*' are allowed", c)
			default:
				return fmt.Sprintf("contains %q: only letters, digits, '-', '_' and '/' are allowed", c)
			}
		}
	}
	return ""
}

// checkID validates trigger ids and secret references.
func checkID(s string) string {
	switch {
	case s == "":
		return "is required"
	case len(s) > maxIDLength:
		return fmt.Sprintf("is %d characters long, the limit is %d", len(s), maxIDLength)
	}
	for _, c := range []byte(s) {
		if !nameByte(c) && c != '.' {
			return fmt.Sprintf("contains %q: only letters, digits, '-', '_' and '.' are allowed", c)
		}
	}
	return ""
}

func checkURL(s string) string {
	if s == "" {
		return "is required"
	}
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return "is not a URL: " + err.Error()
	case u.Scheme != "http" && u.Scheme != "https":
		return "must be an absolute http or https URL"
	case u.Host == "":
		return "has no host"
	case u.User != nil:
		return "must not carry credentials; use headers or secretsRef"
	case u.Fragment != "":
		return "must not have a fragment"
	}
	return ""
}

// IsToken reports whether s is a non-empty run of letters, digits, '-' and
// '_': the alphabet shared by tenant names, collection segments, base64url
// and hex, which NATS therefore takes literally in a subject.
func IsToken(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range []byte(s) {
		if !nameByte(c) {
			return false
		}
	}
	return true
}

func nameByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
}

// validHeaderName reports whether s is an RFC 9110 token.
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range []byte(s) {
		if nameByte(c) || strings.IndexByte("!#$%&'*+.^`|~", c) >= 0 {
			continue
		}
		return false
	}
	return true
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

func orUnknown(s string) string {
	if s == "" {
		return "an earlier entry"
	}
	return s
}
