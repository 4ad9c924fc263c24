// Package condition compiles and runs the CEL conditions of triggers.
//
// A condition sees one variable, `event`, with the fields type, tenant,
// collection, docKey, timestamp, document (the after image) and before. The
// environment holds only deterministic functions: the same event always gives
// the same answer, so a replayed change matches the same triggers it did the
// first time.
package condition

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"reflect"
	"time"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/ext"
)

// Event is what a condition sees as `event`.
type Event struct {
	Type       string         `cel:"type"`
	Tenant     string         `cel:"tenant"`
	Collection string         `cel:"collection"`
	DocKey     string         `cel:"docKey"`
	Timestamp  time.Time      `cel:"timestamp"`
	Document   map[string]any `cel:"document"`
	Before     map[string]any `cel:"before"`
}

// DefaultCostLimit bounds the work one evaluation may do. It is generous for
// field comparisons and string functions yet stops a comprehension over a
// huge array long before it could stall the watcher.
const DefaultCostLimit = 1_000_000

// ErrNotBool is returned when a condition does not produce a boolean.
var ErrNotBool = errors.New("condition must evaluate to a bool")

// Compiler turns condition source into reusable programs. It is safe for
// concurrent use.
type Compiler struct {
	env       *cel.Env
	costLimit uint64
}

// NewCompiler builds the CEL environment. costLimit 0 means DefaultCostLimit.
func NewCompiler(costLimit uint64) (*Compiler, error) {
	costLimit = cmp.Or(costLimit, DefaultCostLimit)
	env, err := cel.NewEnv(
		ext.NativeTypes(reflect.TypeFor[Event](), ext.ParseStructTags(true)),
		cel.Variable("event", cel.ObjectType("condition.Event")),
		cel.CrossTypeNumericComparisons(true),
		ext.Strings(),
		ext.Math(),
		ext.Lists(),
	)
	if err != nil {
		return nil, fmt.Errorf("condition: build CEL environment: %w", err)
	}
	return &Compiler{env: env, costLimit: costLimit}, nil
}

// Program is a compiled condition.
type Program struct {
	source string
	prg    cel.Program // nil means "always true"
}

// Source returns the expression the program was compiled from.
func (p *Program) Source() string { return p.source }

// Compile checks expr against the `event` variable and requires a bool (or a
// dyn that the evaluator checks at run time, such as `event.document.active`).
// An empty expression compiles to a program that always matches.
func (c *Compiler) Compile(expr string) (*Program, error) {
	if expr == "" {
		return &Program{}, nil
	}
	ast, iss := c.env.Compile(expr)
	if iss.Err() != nil {
		return nil, fmt.Errorf("%w", iss.Err())
	}
	out := ast.OutputType()
	if !out.IsExactType(cel.BoolType) && !out.IsExactType(cel.DynType) {
		return nil, fmt.Errorf("%w, got %s", ErrNotBool, out)
	}
	prg, err := c.env.Program(ast,
		cel.CostLimit(c.costLimit),
		cel.InterruptCheckFrequency(100),
	)
	if err != nil {
		return nil, fmt.Errorf("plan condition: %w", err)
	}
	return &Program{source: expr, prg: prg}, nil
}

// Eval runs the program against ev. A runtime error (a missing field, a type
// mismatch, the cost limit) is returned so the caller can count it; callers
// treat it as "no match".
func (p *Program) Eval(ctx context.Context, ev *Event) (bool, error) {
	if p.prg == nil {
		return true, nil
	}
	out, _, err := p.prg.ContextEval(ctx, map[string]any{"event": ev})
	if err != nil {
		return false, err
	}
	b, ok := out.Value().(bool)
	if !ok {
		return false, fmt.Errorf("%w, got %s", ErrNotBool, out.Type())
	}
	return b, nil
}
