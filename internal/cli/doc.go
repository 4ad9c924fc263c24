package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/triggerflow/triggerflow/docstore"
)

func newDocCmd() *cobra.Command {
	var db, tenant string
	cmd := &cobra.Command{
		Use:   "doc",
		Short: "Write documents to the embedded SQLite store (demos and tests)",
		Long: `Put or delete documents in the embedded SQLite document store. Every write
produces a change event atomically (SQLite triggers fill the change log), so
the watcher sees it exactly as it would see an application's write.`,
	}
	cmd.PersistentFlags().StringVar(&db, "db", "data/documents.db", "SQLite document store file")
	cmd.PersistentFlags().StringVar(&tenant, "tenant", "dev", "tenant")

	put := &cobra.Command{
		Use:   "put <collection> <id> [json]",
		Short: "Create or update a document (JSON from the argument or stdin)",
		Example: `  triggerflow doc put orders o-1 '{"status":"paid","total":12.5}'
  echo '{"name":"Ada"}' | triggerflow doc put users u-1`,
		Args: cobra.RangeArgs(2, 3),
		RunE: func(cmd *cobra.Command, args []string) error {
			var body []byte
			if len(args) == 3 {
				body = []byte(args[2])
			} else {
				var err error
				if body, err = io.ReadAll(io.LimitReader(cmd.InOrStdin(), 16<<20)); err != nil {
					return err
				}
			}
			if !json.Valid(body) {
				return fmt.Errorf("document is not valid JSON")
			}
			store, err := docstore.Open(cmd.Context(), docstore.Config{Path: db})
			if err != nil {
				return err
			}
			defer store.Close()
			if err := store.Put(cmd.Context(), tenant, args[0], args[1], body); err != nil {
				return err
			}
			d, err := store.Get(cmd.Context(), tenant, args[0], args[1])
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "put %s/%s/%s version %d\n", tenant, args[0], args[1], d.Version)
			return nil
		},
	}
	del := &cobra.Command{
		Use:   "delete <collection> <id>",
		Short: "Delete a document",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			store, err := docstore.Open(cmd.Context(), docstore.Config{Path: db})
			if err != nil {
				return err
			}
			defer store.Close()
			if err := store.Delete(cmd.Context(), tenant, args[0], args[1]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "deleted %s/%s/%s\n", tenant, args[0], args[1])
			return nil
		},
	}
	get := &cobra.Command{
		Use:   "get <collection> <id>",
		Short: "Print a document",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := os.Stat(db); err != nil {
				return err
			}
			store, err := docstore.Open(cmd.Context(), docstore.Config{Path: db})
			if err != nil {
				return err
			}
			defer store.Close()
			d, err := store.Get(cmd.Context(), tenant, args[0], args[1])
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s\n", d.Data)
			return nil
		},
	}
	cmd.AddCommand(put, del, get)
	return cmd
}
