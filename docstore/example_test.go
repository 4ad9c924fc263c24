package docstore_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/triggerflow/triggerflow/docstore"
	"github.com/triggerflow/triggerflow/watcher"
)

func Example() {
	dir, err := os.MkdirTemp("", "docstore-example")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)

	ctx := context.Background()
	st, err := docstore.Open(ctx, docstore.Config{Path: filepath.Join(dir, "documents.db")})
	if err != nil {
		panic(err)
	}
	defer st.Close()

	_ = st.Put(ctx, "acme", "orders", "o-1", json.RawMessage(`{"total": 12}`))
	_ = st.Put(ctx, "acme", "orders", "o-1", json.RawMessage(`{"total": 15}`))
	_ = st.Delete(ctx, "acme", "orders", "o-1")

	src, err := st.Source("acme")
	if err != nil {
		panic(err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	n := 0
	err = src.Watch(ctx, "", func(c watcher.Change) error {
		fmt.Printf("%s %s %s/%s before=%s after=%s\n", c.Position, c.Type, c.Collection, c.DocKey, c.Before, c.After)
		if n++; n == 3 {
			cancel()
		}
		return nil
	})
	fmt.Println(err)
	// Output:
	// 00000000000000000001 create orders/o-1 before= after={"total":12}
	// 00000000000000000002 update orders/o-1 before={"total":12} after={"total":15}
	// 00000000000000000003 delete orders/o-1 before={"total":15} after=
	// context canceled
}
