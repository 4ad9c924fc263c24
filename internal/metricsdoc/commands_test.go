package metricsdoc_test

import (
	"io"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/triggerflow/triggerflow/internal/cli"
)

// inlineCommand is a `triggerflow …` span in running text.
var inlineCommand = regexp.MustCompile("`(triggerflow [^`]+)`")

// documentedCommands returns every triggerflow command line of a page:
// lines of code blocks (with their "\" continuations) and inline spans.
func documentedCommands(t *testing.T, doc string) []string {
	t.Helper()
	data, err := os.ReadFile("../../docs/" + doc)
	require.NoError(t, err)
	var out, prose []string
	inBlock, cont := false, ""
	for line := range strings.SplitSeq(string(data), "\n") {
		if strings.HasPrefix(line, "```") {
			inBlock = !inBlock
			continue
		}
		if !inBlock {
			prose = append(prose, line)
			continue
		}
		line = strings.TrimSpace(line)
		if cont != "" {
			line = cont + " " + line
			cont = ""
		} else if !strings.HasPrefix(line, "triggerflow ") {
			continue
		}
		if l, ok := strings.CutSuffix(line, `\`); ok {
			cont = strings.TrimSpace(l)
			continue
		}
		if i := strings.Index(line, " #"); i >= 0 {
			line = line[:i]
		}
		out = append(out, line)
	}
	// Inline spans may wrap across lines of a paragraph.
	for _, m := range inlineCommand.FindAllStringSubmatch(strings.Join(prose, " "), -1) {
		out = append(out, strings.Join(strings.Fields(m[1]), " "))
	}
	return out
}

// words splits a command line like a shell would for these simple cases
// (single and double quotes), standing in "x" for placeholders such as
// <seq>, <token> and ….
func words(line string) []string {
	var out []string
	var cur strings.Builder
	quote, in := rune(0), false
	for _, r := range line {
		switch {
		case quote != 0 && r == quote:
			quote = 0
		case quote != 0:
			cur.WriteRune(r)
		case r == '\'' || r == '"':
			quote, in = r, true
		case r == ' ':
			if in || cur.Len() > 0 {
				out = append(out, cur.String())
			}
			cur.Reset()
			in = false
		default:
			cur.WriteRune(r)
			in = true
		}
	}
	if in || cur.Len() > 0 {
		out = append(out, cur.String())
	}
	for i, w := range out {
		if strings.Contains(w, "…") || strings.HasPrefix(w, "<") {
			out[i] = "1"
		}
	}
	return out
}

// TestDocumentedCommandsExist runs every `triggerflow` command line of the
// operations, migration and metrics pages through the CLI's own command
// tree and flag parser (without executing it): a renamed command or flag
// fails here rather than in an operator's terminal.
func TestDocumentedCommandsExist(t *testing.T) {
	var problems []string
	checked := 0
	for _, doc := range []string{"operations.md", "migration.md", "metrics.md", "guarantees.md", "receivers.md", "triggers.md"} {
		for _, line := range documentedCommands(t, doc) {
			args := words(line)[1:]
			root := cli.New(io.Discard, io.Discard)
			cmd, rest, err := root.Find(args)
			if err == nil && cmd != root && !cmd.Runnable() && cmd.HasSubCommands() && len(rest) == 0 {
				continue // a command group named in running text, such as `triggerflow checkpoint`
			}
			if err != nil || cmd == root || !cmd.Runnable() {
				problems = append(problems, doc+": `"+line+"`: no such command")
				continue
			}
			if err := cmd.ParseFlags(rest); err != nil {
				problems = append(problems, doc+": `"+line+"`: "+err.Error())
				continue
			}
			if err := cmd.ValidateArgs(cmd.Flags().Args()); err != nil {
				problems = append(problems, doc+": `"+line+"`: "+err.Error())
			}
			checked++
		}
	}
	require.Positive(t, checked)
	t.Logf("%d command lines checked", checked)
	failIf(t, problems, "the docs show triggerflow commands the CLI does not accept")
}
