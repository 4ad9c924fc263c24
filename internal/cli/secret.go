package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/triggerflow/triggerflow/signature"
)

func newSecretCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "secret", Short: "Webhook signing secrets"}
	cmd.AddCommand(&cobra.Command{
		Use:   "generate",
		Short: "Print a new random signing secret (whsec_…)",
		Long: `Prints a new 32-byte Standard Webhooks secret. Add it as a line of the
tenant's secret file (secrets/<tenant>/<ref>) next to the old one to rotate:
deliveries are then signed with both until you remove the old line.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := signature.NewSecret()
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), s.Encode())
			return nil
		},
	})
	return cmd
}
