package testenv

import (
	"os"
	"strings"
	"testing"
)

// RequireQuoted checks that the document doc quotes, verbatim in a Go code
// block, the example that the test file src holds between the lines
// "// BEGIN <name> example" and "// END <name> example": the code the docs
// show is the code the tests run.
func RequireQuoted(t testing.TB, src, name, doc string) {
	t.Helper()
	code, err := os.ReadFile(src)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	_, example, ok := strings.Cut(string(code), "// BEGIN "+name+" example\n")
	if ok {
		example, _, ok = strings.Cut(example, "// END "+name+" example")
	}
	if !ok {
		t.Fatalf("testenv: %s has no %q example between BEGIN and END markers", src, name)
	}
	text, err := os.ReadFile(doc)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	if !strings.Contains(string(text), "```go\n"+strings.TrimSpace(example)+"\n```") {
		t.Errorf("%s must quote the %s example between the markers in %s verbatim", doc, name, src)
	}
}
