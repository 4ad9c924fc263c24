// Command triggerflow operates and inspects a Triggerflow installation; see
// `triggerflow --help`.
package main

import (
	"os"

	"github.com/triggerflow/triggerflow/internal/cli"
)

func main() {
	os.Exit(cli.Execute(os.Args[1:], os.Stdout, os.Stderr))
}
