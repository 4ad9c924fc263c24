package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"time"

	"github.com/triggerflow/triggerflow/docstore"
)

// The large-document rows (tl, tli) measure the claim check: cold keys,
// each event an update of a document the bench wrote before the watcher
// started, so every task carries a before and an after image of
// Options.LargeDocBytes. tl keeps the watcher's default
// publisher.imageThreshold (the images go to the image bucket, the task
// carries references), tli sets it to "inline" (the task carries both
// images through NATS and into Temporal's history).

// largeInlineMaxPayload is the inline row's publisher.maxPayload: the
// embedded NATS server's default max_payload, 1 MiB.
const largeInlineMaxPayload = 1 << 20

// largeTaskOverhead bounds what an inline update task holds besides its
// two images (ids, subject, positions, trigger, signature), generously.
const largeTaskOverhead = 16 << 10

// minLargeDocBytes keeps the documents above the default
// publisher.imageThreshold (4096), so the claim-check row stores them.
const minLargeDocBytes = 8 << 10

// maxLargeDocBytes is the largest document an inline update task carries
// twice within largeInlineMaxPayload.
const maxLargeDocBytes = (largeInlineMaxPayload - largeTaskOverhead) / 2

// largeRowName names the row of one image path; "cold" stays out of the
// name, so the ratio to the cold ceiling (b), whose events are a few
// bytes, is not computed for it.
func largeRowName(inline bool, size int) string {
	path := "claim check"
	if inline {
		path = "inline"
	}
	return fmt.Sprintf("triggerflow %s updates, cold keys, %s (SQLite)", formatSize(size), path)
}

// formatSize writes n bytes as KiB or MiB when it is a whole number of
// them.
func formatSize(n int) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return strconv.Itoa(n) + " B"
}

// largePublisher is the watcher's publisher section of a large row.
func largePublisher(inline bool) string {
	if inline {
		return fmt.Sprintf("{imageThreshold: inline, maxPayload: %d}", largeInlineMaxPayload)
	}
	return "" // the defaults: imageThreshold 4096
}

// largeReleaseDelay is the claim-check row's worker.imageReleaseDelay.
// The default, a minute, would put every deletion after the closed loop
// and leave its cost out of CPU per delivery; at a steady rate the
// deletions run alongside the deliveries, which this models.
const largeReleaseDelay = "1ms"

// largeDoc returns a maker of documents of about size bytes (compact
// JSON): the mark's id and t, which the receiver reads from data.after,
// and an array of order lines. The lines are the same in every document:
// pseudo-random values from a fixed seed, with repeated keys, about as
// compressible as ordinary JSON documents.
func largeDoc(size int) func(Mark) ([]byte, error) {
	// A typical mark: an id of about 60 bytes, t of 19 digits.
	const markBytes = len(`{"id":"","t":,"items":}`) + 60 + 19
	items := orderLines(max(size-markBytes, 2))
	return func(m Mark) ([]byte, error) {
		id, err := json.Marshal(m.ID)
		if err != nil {
			return nil, err
		}
		b := make([]byte, 0, len(items)+len(id)+48)
		b = append(b, `{"id":`...)
		b = append(b, id...)
		b = append(b, `,"t":`...)
		b = strconv.AppendInt(b, m.T, 10)
		b = append(b, `,"items":`...)
		b = append(b, items...)
		return append(b, '}'), nil
	}
}

// orderLines is a JSON array of exactly n bytes (n at least 2).
func orderLines(n int) []byte {
	rng := rand.New(rand.NewPCG(20, 100))
	const letters = "abcdefghijklmnopqrstuvwxyz      "
	note := make([]byte, 32)
	var b bytes.Buffer
	b.WriteByte('[')
	for line := 1; ; line++ {
		for i := range note {
			note[i] = letters[rng.IntN(len(letters))]
		}
		item := fmt.Appendf(nil, `{"line":%d,"sku":"SKU-%08X","qty":%d,"price":%d.%02d,"note":"%s"}`,
			line, rng.Uint32(), 1+rng.IntN(20), rng.IntN(500), rng.IntN(100), note)
		// Room for a comma, this line, and a filler line after it.
		if b.Len()+1+len(item)+len(`,{"fill":""}`)+1 > n {
			break
		}
		if line > 1 {
			b.WriteByte(',')
		}
		b.Write(item)
	}
	// Fill to exactly n bytes: a last line with a string of the rest,
	// or spaces where no line fits.
	if rest := n - b.Len() - 1; rest >= len(`,{"fill":""}`) {
		sep := ","
		if b.Len() == 1 {
			sep = ""
		}
		fill := rest - len(sep) - len(`{"fill":""}`)
		b.WriteString(sep + `{"fill":"` + string(bytes.Repeat([]byte{'.'}, fill)) + `"}`)
	}
	for b.Len() < n-1 {
		b.WriteByte(' ')
	}
	b.WriteByte(']')
	return b.Bytes()
}

// seedCounts is how many documents a large row writes before its
// pipeline starts, per phase: one per event the phase may write (the
// open loops write at most sz.Open).
func seedCounts(sz Sizes) map[Phase]int {
	out := map[Phase]int{Closed: sz.Closed}
	if sz.Open > 0 {
		out[Open] = sz.Open
		for _, ph := range SweepPhases[:min(len(sz.Sweep), len(SweepPhases))] {
			out[ph] = sz.Open
		}
	}
	return out
}

// seedLarge writes the documents of seedCounts(sz) of scenario name: the
// keys its phases' events update.
func seedLarge(name string, sz Sizes, doc func(Mark) ([]byte, error)) func(context.Context, *docstore.Store) error {
	return func(ctx context.Context, st *docstore.Store) error {
		counts := seedCounts(sz)
		phases := make([]Phase, 0, len(counts))
		for ph := range counts {
			phases = append(phases, ph)
		}
		slices.Sort(phases)
		for _, ph := range phases {
			for i := range counts[ph] {
				b, err := doc(Mark{ID: "seed"})
				if err != nil {
					return err
				}
				if err := st.Put(ctx, tfTenant, collection(name, ph), docKey(i), b); err != nil {
					return err
				}
			}
		}
		return nil
	}
}

// largeRows measures the large-document rows o selects, each on a
// pipeline of its own: the watchers' publisher settings differ, and peak
// RSS is per row.
func (r *run) largeRows() error {
	for _, c := range []struct {
		key    string
		inline bool
	}{{"tl", false}, {"tli", true}} {
		if !r.o.want(c.key) {
			continue
		}
		if err := r.largeRow(c.key, c.inline); err != nil {
			return err
		}
	}
	return nil
}

func (r *run) largeRow(key string, inline bool) error {
	name := largeRowName(inline, r.o.LargeDocBytes)
	// No sweep: the lower rates would add their minute to `make bench`
	// and say little more than the main open loop about the images.
	sz := r.sizes
	sz.Sweep = nil
	doc := largeDoc(r.o.LargeDocBytes)
	cfg := r.pipeline("pipeline-" + key)
	cfg.Publisher = largePublisher(inline)
	if !inline {
		cfg.Worker = "imageReleaseDelay: " + largeReleaseDelay
	}
	cfg.Seed = seedLarge(name, sz, doc)
	if err := r.freshTemporal(); err != nil {
		return err
	}
	counts := seedCounts(sz)
	n := 0
	for _, c := range counts {
		n += c
	}
	r.step(fmt.Sprintf("starting the Triggerflow binaries (SQLite, %s) after writing %d documents of %s", key, n, formatSize(r.o.LargeDocBytes)))
	p, err := StartPipeline(r.ctx, cfg)
	if err != nil {
		return err
	}
	defer p.Close()
	sc, err := p.scenario(r.ctx, r.srv.Client, name, 0, doc)
	if err != nil {
		return err
	}
	path := "the watcher stores both images in the image bucket (publisher.imageThreshold 4096, the default) and the task carries references; the worker fetches them at delivery and deletes them " +
		largeReleaseDelay + " after (worker.imageReleaseDelay, default 1m: so the deletions count in the closed loop's CPU, as at a steady rate)"
	if inline {
		path = fmt.Sprintf("the task carries both images (publisher.imageThreshold: inline, maxPayload %d)", largeInlineMaxPayload)
	}
	// The body holds the before and the after image.
	sc.MinBody = 2 * r.o.LargeDocBytes * 99 / 100
	sc.Notes += fmt.Sprintf(" Each event updates a document of %d bytes written before the watcher started (and skipped by it), so the task has a before and an after image; %s. No sweep. The bench's CPU includes the embedded NATS server.",
		docSize(doc, name), path)
	r.measure(sc, sz)
	return nil
}

// docSize is the size of the closed loop's first document of scenario
// name, for notes.
func docSize(doc func(Mark) ([]byte, error), name string) int {
	b, _ := doc(Mark{ID: name + "/c/0", T: time.Now().UnixNano()})
	return len(b)
}
