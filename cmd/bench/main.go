// Command bench measures Triggerflow end to end against its raw ceilings on
// the same servers and prints one table (`make bench`); the table is also
// written as JSON under -results. Method: docs/benchmarks.md.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"

	"github.com/triggerflow/triggerflow/internal/bench"
	"github.com/triggerflow/triggerflow/internal/service"
)

func main() {
	var o bench.Options
	o.RegisterFlags(flag.CommandLine)
	version := flag.Bool("version", false, "print the version and exit")
	flag.Parse()
	if *version {
		fmt.Println(service.Build().String("bench"))
		return
	}
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "bench: unexpected argument %q: bench takes flags only (see -h)\n", flag.Arg(0))
		os.Exit(2)
	}
	o.Flags = map[string]string{}
	flag.VisitAll(func(f *flag.Flag) { o.Flags[f.Name] = f.Value.String() })
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := bench.Run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}
