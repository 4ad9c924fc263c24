package cli_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/triggerflow/triggerflow/internal/cli"
	"github.com/triggerflow/triggerflow/signature"
)

func run(args ...string) (code int, out, errOut string) {
	var o, e bytes.Buffer
	code = cli.Execute(args, &o, &e)
	return code, o.String(), e.String()
}

func TestValidateExamples(t *testing.T) {
	t.Parallel()
	code, out, errOut := run("validate", "../../examples/triggers")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "order-paid")
	require.Contains(t, out, "chats/*/members")
	require.Contains(t, out, "5 trigger(s) valid", "demo's four and acme's one")
	code, out, errOut = run("validate", "--tenant", "demo", "../../examples/triggers/orders.yaml")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "2 trigger(s) valid")
}

func TestValidateReportsEveryProblem(t *testing.T) {
	t.Parallel()
	code, _, errOut := run("validate", "--tenant", "acme", "../../trigger/testdata/invalid")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "ftp-url.yaml:")
	require.Contains(t, errOut, `trigger "t1": url:`)
	require.Contains(t, errOut, "did you mean \"condition\"")
}

func TestValidateTenantScope(t *testing.T) {
	t.Parallel()
	code, _, errOut := run("validate", "--tenant", "other", "../../examples/triggers")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, `does not match the engine's tenant scope "other"`)
}

func TestValidateUsage(t *testing.T) {
	t.Parallel()
	code, _, errOut := run("validate")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "accepts 1 arg")
	code, _, errOut = run("validate", "/does/not/exist")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "no such file")
}

func TestSecretGenerate(t *testing.T) {
	t.Parallel()
	code, out, _ := run("secret", "generate")
	require.Equal(t, 0, code)
	s, err := signature.ParseSecret(strings.TrimSpace(out))
	require.NoError(t, err)
	require.Len(t, s, 32)
}
