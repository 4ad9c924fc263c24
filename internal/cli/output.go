package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"
)

// Output formats of the list commands.
const (
	outputTable = "table"
	outputJSON  = "json"
)

// outputFlag is -o/--output of a list command.
type outputFlag struct{ format string }

func (o *outputFlag) register(cmd *cobra.Command) {
	cmd.Flags().StringVarP(&o.format, "output", "o", outputTable, "output format: table, or json (one array of every field)")
}

// check runs before anything connects, so that a typo costs no round trip.
func (o *outputFlag) check() error {
	if o.format != outputTable && o.format != outputJSON {
		return fmt.Errorf("--output %q: want %s or %s", o.format, outputTable, outputJSON)
	}
	return nil
}

func (o *outputFlag) json() bool { return o.format == outputJSON }

// writeJSON writes v indented, as `dlq show` does.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// MissingStreamError is a stream the NATS server does not have. The
// commands name it, its role and the way out, where JetStream would say
// "API error: code=404 … stream not found" or "no response from stream".
type MissingStreamError struct {
	Role   string // "dead-letter", "task", "audit"
	Stream string
	Flag   string // the flag that names it
	URL    string
	Err    error
}

func (e *MissingStreamError) Error() string {
	return fmt.Sprintf("the %s stream %q does not exist on %s. Check %s and --nats; the watcher, ingest and worker create the streams when they start (nats.provisioning: create), or your infrastructure does (verify)", e.Role, e.Stream, e.URL, e.Flag)
}

func (e *MissingStreamError) Unwrap() error { return e.Err }

// explainStream turns JetStream's missing-stream errors, from a read
// (stream not found) or a publish (no stream takes the subject), into a
// MissingStreamError; other errors pass unchanged.
func explainStream(err error, role, stream, flag, url string) error {
	if errors.Is(err, jetstream.ErrStreamNotFound) || errors.Is(err, jetstream.ErrNoStreamResponse) {
		return &MissingStreamError{Role: role, Stream: stream, Flag: flag, URL: url, Err: err}
	}
	return err
}
