package evaluator_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/triggerflow/triggerflow/trigger"
)

const typicalCondition = `event.document.status == "paid" && event.document.total > 100 && event.before.status != "paid"`

const typicalDoc = `{"status":"paid","total":250.5,"currency":"EUR","customer":{"id":"c-17","tier":"gold"},"items":[{"sku":"a","qty":2},{"sku":"b","qty":1}]}`

// BenchmarkMatchTypical is one change against one trigger with a typical
// condition, including decoding both images.
func BenchmarkMatchTypical(b *testing.B) {
	ix := newEnv(b).compile(b, trig("paid", "orders", typicalCondition, trigger.EventUpdate))
	c := change("orders", trigger.EventUpdate, `{"status":"new","total":250.5}`, typicalDoc)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		ms, err := ix.Match(ctx, c)
		if err != nil || len(ms) != 1 {
			b.Fatal(ms, err)
		}
	}
}

// BenchmarkMatch1000Triggers is one change against a set of 1,000 triggers:
// 500 on exact collections and 500 globs over nested collections, each with
// a condition. The change's collection is watched by a handful of them.
func BenchmarkMatch1000Triggers(b *testing.B) {
	var ts []*trigger.Trigger
	for i := range 500 {
		ts = append(ts, trig(fmt.Sprintf("exact-%d", i), fmt.Sprintf("coll%d", i%250), typicalCondition))
	}
	for i := range 500 {
		var pattern string
		switch i % 4 {
		case 0:
			pattern = fmt.Sprintf("tenants%d/*/orders", i)
		case 1:
			pattern = fmt.Sprintf("*/*/sub%d", i)
		case 2:
			pattern = fmt.Sprintf("coll%d/*", i)
		default:
			pattern = fmt.Sprintf("pre%d*/x/*", i)
		}
		ts = append(ts, trig(fmt.Sprintf("glob-%d", i), pattern, typicalCondition))
	}
	// Collections the benchmark change lands on: two exact triggers share
	// coll7, and coll7/* style globs never match a one-segment collection.
	ix := newEnv(b).compile(b, ts...)
	ctx := context.Background()
	for _, tc := range []struct{ name, collection string }{
		{"exact", "coll7"},
		{"glob", "tenants4/42/orders"},
		{"unwatched", "nobody/1/watches"},
	} {
		c := change(tc.collection, trigger.EventUpdate, `{"status":"new"}`, typicalDoc)
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := ix.Match(ctx, c); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
