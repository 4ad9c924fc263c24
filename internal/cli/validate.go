package cli

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/triggerflow/triggerflow/trigger"
)

func newValidateCmd() *cobra.Command {
	var tenant string
	var limits trigger.Limits
	cmd := &cobra.Command{
		Use:   "validate <file-or-directory>",
		Short: "Check trigger files exactly as the watcher loads them",
		Long: `Load trigger files (YAML or JSON; a directory is read recursively) the way
the watcher does and print every problem, each with file:line, trigger and
field. Exits non-zero when there is any problem, so it fits CI pipelines.`,
		Example: `  triggerflow validate examples/triggers
  triggerflow validate --tenant acme triggers/orders.yaml`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			v, err := trigger.NewValidator(tenant, limits, nil)
			if err != nil {
				return err
			}
			ts, err := trigger.LoadTriggers(args[0], v)
			var ve *trigger.ValidationError
			if errors.As(err, &ve) {
				fmt.Fprintf(cmd.ErrOrStderr(), "%s: %d problem(s):\n", args[0], len(ve.Problems))
				for _, p := range ve.Problems {
					fmt.Fprintln(cmd.ErrOrStderr(), "  "+p.String())
				}
				return ErrSilent
			}
			if err != nil {
				return err
			}
			sort.Slice(ts, func(i, j int) bool { return ts[i].ID < ts[j].ID })
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 2, 2, ' ', 0)
			fmt.Fprintln(w, "TENANT\tTRIGGER\tCOLLECTION\tEVENTS\tURL")
			for _, t := range ts {
				events := "all"
				if len(t.Events) > 0 {
					parts := make([]string, len(t.Events))
					for i, e := range t.Events {
						parts[i] = string(e)
					}
					events = strings.Join(parts, ",")
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", t.Tenant, t.ID, t.Collection, events, t.URL)
			}
			if err := w.Flush(); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%d trigger(s) valid\n", len(ts))
			return nil
		},
	}
	cmd.Flags().StringVar(&tenant, "tenant", "", "require every trigger to belong to this tenant (the watcher's scope)")
	cmd.Flags().IntVar(&limits.MaxTenantLength, "max-tenant-length", 0, "tenant length limit (default 128)")
	cmd.Flags().IntVar(&limits.MaxCollectionLength, "max-collection-length", 0, "collection length limit (default 128)")
	return cmd
}
