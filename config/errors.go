package config

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"

	"github.com/triggerflow/triggerflow/trigger"
)

// FieldError is one problem with one configuration value. Its message reads
// like a compiler diagnostic so editors and people can jump to the spot:
//
//	config.yaml:12: ingest.collisionPolicy: "drop" is not one of serialize, alert, fail
//	$TRIGGERFLOW_NATS_REPLICAS: nats.replicas: "three" is not an integer
type FieldError struct {
	// File is the configuration file being loaded; empty when none was.
	File string
	// Line is the 1-based line in File the value was read from, or 0 when
	// the value is a default, came from the environment, or the problem is
	// not tied to a line.
	Line int
	// Env names the environment variable the value came from, if any.
	Env string
	// Field is the YAML path of the value, like "ingest.collisionPolicy",
	// with list elements as "worker.retryableStatuses[1]". Empty for
	// problems with the file as a whole, such as a YAML syntax error.
	Field string
	// Value is the offending value; nil when there is none to show (a
	// missing value, an unknown key) or the value is a secret.
	Value any
	// Reason says what is wrong, phrased to follow Value.
	Reason string
}

// Error formats e as "where: field: value reason".
func (e *FieldError) Error() string {
	var b strings.Builder
	switch {
	case e.Env != "":
		// The file, if any, did not supply this value, so naming it would
		// send the reader to the wrong place.
		b.WriteString("$" + e.Env + ": ")
	case e.File != "" && e.Line > 0:
		fmt.Fprintf(&b, "%s:%d: ", e.File, e.Line)
	case e.File != "":
		b.WriteString(e.File + ": ")
	}
	if e.Field != "" {
		b.WriteString(e.Field + ": ")
	}
	if e.Value != nil {
		b.WriteString(formatValue(e.Value) + " ")
	}
	b.WriteString(e.Reason)
	return b.String()
}

// formatValue quotes strings so that empty values and stray spaces show.
func formatValue(v any) string {
	if s, ok := v.(fmt.Stringer); ok {
		return s.String()
	}
	if rv := reflect.ValueOf(v); rv.Kind() == reflect.String {
		return strconv.Quote(rv.String())
	}
	return fmt.Sprint(v)
}

// FieldErrors is every problem found in one load, so a user can fix them
// all in one go instead of one per restart. Load, Parse and every Validate
// method return it (never empty) as their error.
type FieldErrors []*FieldError

// Error lists one problem per line.
func (es FieldErrors) Error() string {
	switch len(es) {
	case 0:
		return "no configuration problems"
	case 1:
		return es[0].Error()
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d configuration problems:", len(es))
	for _, e := range es {
		b.WriteString("\n  " + e.Error())
	}
	return b.String()
}

// Unwrap lets errors.As find each *FieldError.
func (es FieldErrors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// problems collects FieldErrors during validation.
type problems struct {
	errs FieldErrors
}

func (p *problems) add(field string, value any, format string, args ...any) {
	p.errs = append(p.errs, &FieldError{Field: field, Value: value, Reason: fmt.Sprintf(format, args...)})
}

// err returns nil rather than an empty FieldErrors, which would be a
// non-nil error interface.
func (p *problems) err() error {
	if len(p.errs) == 0 {
		return nil
	}
	return p.errs
}

func (p *problems) required(field, value string) {
	if value == "" {
		p.add(field, nil, "must be set (in the file or as $%s)", EnvName(field))
	}
}

func oneOf[S ~string](p *problems, field string, value S, allowed ...S) {
	for _, a := range allowed {
		if value == a {
			return
		}
	}
	names := make([]string, len(allowed))
	for i, a := range allowed {
		names[i] = string(a)
	}
	p.add(field, string(value), "is not one of %s", strings.Join(names, ", "))
}

func (p *problems) atLeast(field string, value, lo int) {
	if value < lo {
		p.add(field, value, "must be at least %d", lo)
	}
}

func (p *problems) between(field string, value, lo, hi int) {
	if value < lo || value > hi {
		p.add(field, value, "must be between %d and %d", lo, hi)
	}
}

func (p *problems) positive(field string, value trigger.Duration) {
	if value <= 0 {
		p.add(field, value, "must be greater than 0")
	}
}
