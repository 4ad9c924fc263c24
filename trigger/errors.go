package trigger

import (
	"errors"
	"fmt"
	"strings"
)

// ErrInvalidTriggers is matched by every error that rejects a trigger set.
var ErrInvalidTriggers = errors.New("invalid triggers")

// Problem is one thing wrong with one trigger (or with a file as a whole).
type Problem struct {
	// File is the source file, with ":line" when known.
	File string
	// Tenant is the tenant whose triggers the problem keeps out, when
	// known; "" for a file too broken to tell.
	Tenant string
	// TriggerID is empty for file-level problems.
	TriggerID string
	// Field is the key path inside the trigger, such as "retryPolicy.maxAttempts".
	Field string
	// Value is the offending value as written, possibly shortened.
	Value string
	// Reason says what is wrong and, where it helps, what is allowed.
	Reason string
}

func (p Problem) String() string {
	var b strings.Builder
	if p.File != "" {
		b.WriteString(p.File)
		b.WriteString(": ")
	}
	if p.TriggerID != "" {
		fmt.Fprintf(&b, "trigger %q: ", p.TriggerID)
	}
	if p.Field != "" {
		b.WriteString(p.Field)
		b.WriteString(": ")
	}
	if p.Value != "" {
		fmt.Fprintf(&b, "%q ", shorten(p.Value))
	}
	b.WriteString(p.Reason)
	return b.String()
}

// ValidationError lists every problem found in one load. Nothing from a load
// that returns it is active.
type ValidationError struct {
	Problems []Problem
}

func (e *ValidationError) Error() string {
	lines := make([]string, 0, len(e.Problems)+1)
	lines = append(lines, fmt.Sprintf("%d problem(s) in trigger definitions:", len(e.Problems)))
	for _, p := range e.Problems {
		lines = append(lines, "  "+p.String())
	}
	return strings.Join(lines, "\n")
}

// Is makes errors.Is(err, ErrInvalidTriggers) true.
func (e *ValidationError) Is(target error) bool { return target == ErrInvalidTriggers }

// problems accumulates Problems; err returns nil when there are none.
type problems []Problem

func (ps *problems) add(p Problem) { *ps = append(*ps, p) }

func (ps problems) err() error {
	if len(ps) == 0 {
		return nil
	}
	return &ValidationError{Problems: ps}
}

func shorten(s string) string {
	const max = 80
	if len(s) <= max {
		return s
	}
	return s[:max] + "…"
}
