package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/spf13/cobra"

	"github.com/triggerflow/triggerflow/tasksig"
)

func newTasksCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "tasks", Short: "Keys that sign delivery tasks (publisher.signingKeyFile, *.verifyKeysFile)"}
	var id, signing, verify string
	keygen := &cobra.Command{
		Use:   "keygen",
		Short: "Make a new Ed25519 task signing key pair",
		Long: `Makes a new key pair for authenticated tasks. The private key goes to
--signing (the watcher's publisher.signingKeyFile; refused if the file
exists), the public key is added to --verify (ingest.verifyKeysFile and
worker.verifyKeysFile; created 0600 when missing). Without files, both lines
are printed.

To rotate: add the new public key to every ingest and worker replica's
verification file first, then give the watcher the new signing key; remove
the old public key only when no task it signed can come back (the task and
dead-letter streams' retention; see docs/operations.md).`,
		Example: `  triggerflow tasks keygen
  triggerflow tasks keygen --id w2026-12 --signing /etc/triggerflow/task-signing.key --verify /etc/triggerflow/task-verify.keys`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			priv, pub, err := tasksig.GenerateKey(id)
			if err != nil {
				return fmt.Errorf("--id: %w", err)
			}
			if signing == "" && verify == "" {
				fmt.Fprintf(cmd.OutOrStdout(), "# signing (watcher, keep secret)\n%s\n# verification (ingest, worker)\n%s\n", priv, pub)
				return nil
			}
			if signing == "" || verify == "" {
				return errors.New("--signing and --verify go together")
			}
			if _, err := os.Stat(signing); !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("--signing %s already exists; a watcher signs with one key", signing)
			}
			if err := os.WriteFile(signing, []byte(priv+"\n"), 0o600); err != nil {
				return err
			}
			f, err := os.OpenFile(verify, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
			if err != nil {
				return err
			}
			if _, err := fmt.Fprintln(f, pub); err != nil {
				_ = f.Close()
				return err
			}
			if err := f.Close(); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote the signing key to %s and added its public key to %s\n", signing, verify)
			return nil
		},
	}
	keygen.Flags().StringVar(&id, "id", "", "key id: letters, digits, '.', '_', '-' (default: k<date>)")
	keygen.Flags().StringVar(&signing, "signing", "", "write the private key to this new file")
	keygen.Flags().StringVar(&verify, "verify", "", "add the public key to this verification file")
	cmd.AddCommand(keygen)
	return cmd
}
