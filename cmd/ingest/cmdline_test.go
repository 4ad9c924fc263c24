package main

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestCommandLine runs the binary's entry point on the command lines that
// end before anything starts.
func TestCommandLine(t *testing.T) {
	t.Parallel()
	var out, errOut bytes.Buffer
	require.Equal(t, 2, run([]string{"ingest.yaml"}, &out, &errOut), "a stray argument is refused")
	require.Contains(t, errOut.String(), `unexpected argument "ingest.yaml"`)
	require.Empty(t, out.String())

	out.Reset()
	errOut.Reset()
	require.Equal(t, 0, run([]string{"--help"}, &out, &errOut))
	require.Contains(t, out.String(), "Usage: ingest [flags]")
	require.Contains(t, out.String(), "SignalWithStartWorkflow", "the binary describes itself")
	require.Empty(t, errOut.String())

	out.Reset()
	require.Equal(t, 0, run([]string{"--version"}, &out, &errOut))
	require.Regexp(t, `^ingest \S+ \(revision \S+, go\S+\)\n$`, out.String())
}
