package daemon

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/triggerflow/triggerflow/internal/service"
)

// Exit statuses of a daemon binary, besides 0. A usage error shares 2 with
// a configuration error: both are the caller's to fix, and neither is worth
// a supervisor's restart.
const (
	ExitFailure = 1
	ExitUsage   = 2
)

// CommandLine is a daemon binary's command line: --config, the binary's
// own flags, --version and --help. The daemons take no arguments, so a
// stray one is refused rather than ignored: `watcher watcher.yaml` would
// otherwise start on built-in defaults, not on the file.
type CommandLine struct {
	// Config is the --config value once Parse returned.
	Config string

	name, about string
	flags       *flag.FlagSet
	version     bool
}

// NewCommandLine returns the command line of the binary name, which --help
// describes with about (paragraphs separated by blank lines).
func NewCommandLine(name, about string) *CommandLine {
	c := &CommandLine{name: name, about: strings.TrimSpace(about), flags: flag.NewFlagSet(name, flag.ContinueOnError)}
	c.flags.StringVar(&c.Config, "config", "", "path to the "+name+"'s YAML config file (TRIGGERFLOW_* variables override it; without it, defaults and the environment only)")
	c.flags.BoolVar(&c.version, "version", false, "print the version and exit")
	// Parse reports errors itself, on the right stream.
	c.flags.SetOutput(io.Discard)
	c.flags.Usage = func() {}
	return c
}

// Flags is where a binary adds its own flags, before Parse.
func (c *CommandLine) Flags() *flag.FlagSet { return c.flags }

// Parse reads args (without the program name). When the binary should not
// run — after --help or --version, written to stdout, or a usage error,
// written to stderr — it returns done with the exit status.
func (c *CommandLine) Parse(args []string, stdout, stderr io.Writer) (status int, done bool) {
	err := c.flags.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		c.usage(stdout)
		return 0, true
	case err != nil:
		fmt.Fprintf(stderr, "%s: %v\nRun '%s --help' for usage.\n", c.name, err, c.name)
		return ExitUsage, true
	case c.version:
		fmt.Fprintln(stdout, service.Build().String(c.name))
		return 0, true
	case c.flags.NArg() > 0:
		fmt.Fprintf(stderr, "%s: unexpected argument %q: %s takes flags only (the config file goes with --config)\nRun '%s --help' for usage.\n", c.name, c.flags.Arg(0), c.name, c.name)
		return ExitUsage, true
	}
	return 0, false
}

// usage prints the flags with two dashes, as the documentation writes
// them (flag.PrintDefaults shows one).
func (c *CommandLine) usage(w io.Writer) {
	fmt.Fprintf(w, "Usage: %s [flags]\n\n%s\n\nExit status: 0 after a clean stop, %d for a usage or configuration\nerror, %d for any other failure.\n\nFlags:\n", c.name, c.about, ExitUsage, ExitFailure)
	c.flags.VisitAll(func(f *flag.Flag) {
		arg, help := flag.UnquoteUsage(f)
		fmt.Fprintf(w, "  --%s", f.Name)
		if arg != "" {
			fmt.Fprintf(w, " %s", arg)
		}
		fmt.Fprintf(w, "\n      %s\n", help)
	})
}
