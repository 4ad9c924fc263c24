package cli

import (
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/triggerflow/triggerflow/audit"
	"github.com/triggerflow/triggerflow/config"
)

func newAuditCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "audit", Short: "Read the audit trail"}
	var natsURL, stream, tenant string
	var limit int
	var out outputFlag
	list := &cobra.Command{
		Use:   "list",
		Short: "List audit records, oldest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := out.check(); err != nil {
				return err
			}
			nc, js, err := jetStream(config.NATS{URL: natsURL})
			if err != nil {
				return err
			}
			defer nc.Close()
			recs, err := audit.List(cmd.Context(), js, stream, tenant, limit)
			if err != nil {
				return explainStream(err, "audit", stream, "--stream", natsURL)
			}
			if out.json() {
				if recs == nil {
					recs = []audit.Record{} // [] rather than null
				}
				return writeJSON(cmd.OutOrStdout(), recs)
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 2, 2, ' ', 0)
			fmt.Fprintln(w, "TIME\tACTION\tTENANT\tACTOR\tREASON\tBEFORE\tAFTER")
			for _, r := range recs {
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Time.Format(time.RFC3339), r.Action, r.Tenant, r.Actor, r.Reason, r.Before, r.After)
			}
			return w.Flush()
		},
	}
	d := config.NATS{}.WithDefaults()
	list.Flags().StringVar(&natsURL, "nats", d.URL, "NATS URL")
	list.Flags().StringVar(&stream, "stream", d.AuditStream, "audit stream")
	list.Flags().StringVar(&tenant, "tenant", "", "only this tenant's records")
	list.Flags().IntVar(&limit, "limit", 0, "at most this many records (0: all)")
	out.register(list)
	cmd.AddCommand(list)
	return cmd
}
