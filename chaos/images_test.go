package chaos_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"math/rand/v2"
	"net"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"golang.org/x/sync/errgroup"

	"github.com/triggerflow/triggerflow/internal/testenv"
)

// The image buckets of the default task and dead-letter streams
// (streams.ImageBucket), and the stream JetStream keeps an object store in.
const (
	taskImages       = "TRIGGERS_IMAGES"
	deadLetterImages = "TRIGGERS_DLQ_IMAGES"
	taskImagesStream = "OBJ_" + taskImages
)

// imageReleaseDelay is the worker's imageReleaseDelay in
// TestWorkerKilledMidFetch. A delivery the killed worker made but Temporal
// had not recorded is repeated by the revived worker, which must still
// find its images: the delay must outlast the time from such a delivery to
// the kill. Here that is the rest of its batch up to the frozen fetch, a
// fraction of a second (about one under the race detector). A killed worker's pending deletions die with it,
// so the images it released in its last delay stay until the bucket's TTL;
// the test accounts for them.
const imageReleaseDelay = 5 * time.Second

// TestWorkerKilledMidFetch SIGKILLs the worker while it is fetching a
// document image from the image bucket (the claim check, package images),
// after it delivered part of a batch that Temporal has not recorded, and
// checks that nothing is lost.
//
// Each document is about 1.2 MiB of JSON, so every image goes to the
// bucket and every task carries references: a create its after image, an
// update its before and after. The worker reaches NATS through a proxy
// (natsProxy) that, once armed, freezes its connection at the first chunk
// of an object store fetch: the chunks of an object come to the worker as
// MSG $O.TRIGGERS_IMAGES.C.<nuid>, which nothing else it receives looks
// like. The worker is then inside ObjectStore.GetBytes, has received at
// most the proxy's one 32 KiB read of an object of more than a MiB, and
// nothing more can reach it; the test confirms it from the server's side,
// which lists an ordered consumer on exactly that object's chunks, and
// SIGKILLs the worker. Every kill therefore lands mid-fetch, and the test
// fails if a freeze does not come. (The freeze holds the whole connection,
// so a deletion falling due in the milliseconds before the kill cannot
// complete either; imageReleaseDelay is far longer than that.)
//
// After a warm-up (one create per document, then a graceful stop, which
// must delete the delivered images at once), each of three rounds writes
// two updates to each of six documents while the worker is down and waits
// until ingest handed them all to Temporal, so each document's workflow
// takes its changes as one batch when the worker starts. The receiver arms
// the proxy when it accepts a delivery that has a later change of its
// document queued behind it, before it answers 200: the worker gets the
// 200, releases that task's images and goes on to fetch the next task of
// the batch, and the freeze catches that fetch or one running beside it.
// The batch is not recorded, so the revived worker must deliver that task
// again, from images the killed worker had released.
//
// After the rounds every change must be delivered, in per-key order,
// duplicates only under one webhook-id, each delivery carrying the full
// before and after images as written (equal JSON once unmarshalled), each
// kill's arming delivery delivered again after the kill, with no dead
// letters and no image fetch reported missing or corrupt. Then the task
// bucket must drain: every object left must be one whose delayed deletion
// a killed worker held (delivered within imageReleaseDelay before a kill
// and not delivered again after it).
func TestWorkerKilledMidFetch(t *testing.T) {
	const (
		keys   = 6
		perKey = 2 // updates per document per round
		rounds = 3 // kills
		settle = 3 * time.Minute
	)
	var px *natsProxy
	st := startStack(t, stackConfig{ingests: 1, workers: 1, ingest: "{sharing: pinned}",
		worker: fmt.Sprintf("httpTimeout: 5s, quietPeriod: 2s, imageReleaseDelay: %s, "+
			"retry: {maxAttempts: 1000, initialBackoff: 200ms, maxBackoff: 1s, multiplier: 2}", imageReleaseDelay),
		workerNATS: func(natsURL string) string {
			px = startNATSProxy(t, natsURL, taskImages)
			return px.url
		},
	})
	st.rcv.keepImageDigests()
	begin := time.Now()
	since := func() time.Duration { return time.Since(begin).Round(time.Millisecond) }
	worker := st.workers[0]
	js := testJetStream(t, st.natsURL)
	signalled := func() float64 { return st.metric(t, st.ingests[0], "triggerflow_ingest_signalled_total", nil) }

	// digests[k] is imageDigest of the document change k wrote, computed
	// beside the run (digesting is slow under the race detector).
	digests := map[ks]string{}
	var digestMu sync.Mutex
	var digesting errgroup.Group
	var writes []write
	images := 0 // written, one per create, two per update
	put := func(key string) {
		seq := st.next[key]
		st.next[key]++
		doc := bigDocument(key, seq)
		digesting.Go(func() error {
			d, err := imageDigest(doc)
			digestMu.Lock()
			defer digestMu.Unlock()
			digests[ks{key, seq}] = d
			return err
		})
		require.NoError(t, st.store.Put(context.Background(), "acme", "items", key, doc))
		writes = append(writes, write{key: key, seq: seq, at: time.Now()})
		images += min(seq, 1) + 1
	}
	revive := func() {
		worker.start()
		awaitReady(t, st.hc, worker.proc, worker.ops)
		awaitPollers(t, st.tc, scaleTaskQueue, worker.cmd.Process.Pid)
	}

	for i := range keys {
		put(fmt.Sprintf("k%02d", i))
	}
	require.True(t, st.rcv.awaitDistinct(len(writes), settle), "warm-up: %d of %d changes delivered", st.rcv.distinct(), len(writes))
	// A graceful stop deletes the images whose release was delayed.
	stopGracefully(t, worker.proc)
	require.Empty(t, objectsIn(t, js, taskImages), "a worker stopped gracefully deletes the images it delivered")
	t.Logf("images: %8s warm-up delivered, worker stopped gracefully, task bucket empty", since())

	var kills []workerKill
	for round := range rounds {
		for range perKey {
			for i := range keys {
				put(fmt.Sprintf("k%02d", i))
			}
		}
		awaitCount(t, fmt.Sprintf("round %d: ingest to hand off %d tasks", round, len(writes)), float64(len(writes)), signalled)

		last := map[string]int{}
		for _, w := range writes {
			last[w.key] = max(last[w.key], w.seq)
		}
		armedBy := make(chan delivery, 1)
		st.rcv.setOnAccept(func(d delivery) {
			if d.seq < last[d.key] && len(armedBy) == 0 {
				px.arm()
				armedBy <- d
			}
		})
		revive()
		var f frozenFetch
		select {
		case f = <-px.frozen:
		case <-time.After(settle):
			t.Fatalf("round %d: the proxy froze no image fetch; %d of %d changes delivered, armed: %v",
				round, st.rcv.distinct(), len(writes), len(armedBy) > 0)
		}
		st.rcv.setOnAccept(nil)
		by := <-armedBy

		// The server's view of the same moment: the worker's ordered
		// consumer on exactly that object's chunks exists.
		ci := fetchConsumer(t, js, f.subject)
		require.NotNil(t, ci, "round %d: the proxy froze a chunk of %s, yet the server lists no consumer on it", round, f.subject)
		pid := worker.cmd.Process.Pid
		require.NotNil(t, worker.stop(syscall.SIGKILL), "the worker was not running")
		k := workerKill{at: time.Now(), frozeFor: time.Since(f.at), pid: pid, subject: f.subject, passed: f.passed,
			consumerDelivered: ci.Delivered.Consumer, armedBy: by}
		k.object, k.size = objectOfChunks(t, js, f.subject)
		kills = append(kills, k)
		t.Logf("images: %8s round %d: SIGKILLed worker pid %d mid-fetch of %s (%d bytes; %d bytes of its first chunk "+
			"message passed on; the server had sent %d chunks); armed by the delivery of %s/%d; the kill came %s after the freeze",
			since(), round, pid, k.object, k.size, k.passed, k.consumerDelivered, by.key, by.seq, k.frozeFor.Round(time.Millisecond))
	}
	revive()

	require.True(t, st.rcv.awaitDistinct(len(writes), settle), "%d of %d changes delivered", st.rcv.distinct(), len(writes))
	t.Logf("images: %8s every change delivered", since())
	awaitNoStuckWorkflows(t, st.tc)

	requireDeliveredInOrder(t, st.rcv, writes)
	acc, _, _, _ := st.rcv.snapshot()
	require.NoError(t, digesting.Wait())
	var wrongImages []string
	for _, d := range acc {
		wantBefore := ""
		if d.seq > 0 {
			wantBefore = digests[ks{d.key, d.seq - 1}]
		}
		if d.before != wantBefore || d.after != digests[ks{d.key, d.seq}] {
			wrongImages = append(wrongImages, fmt.Sprintf("%s/%d (event %s)", d.key, d.seq, d.eventID))
		}
	}
	require.Empty(t, wrongImages, "deliveries whose before or after image is not the document written")
	for i, k := range kills {
		again := false
		for _, d := range acc {
			again = again || (d.key == k.armedBy.key && d.seq == k.armedBy.seq && d.arrived.After(k.at))
		}
		require.True(t, again, "kill %d: %s/%d was delivered in a batch the kill interrupted, so it must be delivered again after it",
			i, k.armedBy.key, k.armedBy.seq)
	}
	repeats := repeatedAcrossKills(acc, kills)
	t.Logf("images: deliveries a killed worker made that a later one repeated: %s", repeats)
	require.Zero(t, deadLetters(t, st.natsURL), "dead-letter stream must be empty; a repeated delivery "+
		"finds its images only if imageReleaseDelay (%s) outlasts the time from the first delivery to the kill (%s)", imageReleaseDelay, repeats)
	require.Empty(t, objectsIn(t, js, deadLetterImages), "no dead letter, so no dead-letter copies of images")

	stored := st.metric(t, st.watcher, "triggerflow_images_stored_total", nil)
	require.GreaterOrEqual(t, stored, float64(images), "the watcher stored every image in the bucket (claim check in use)")
	require.Positive(t, st.metric(t, worker, "triggerflow_images_fetched_total", nil), "the revived worker fetched images")
	for _, reason := range []string{"missing", "corrupt"} {
		require.Zero(t, st.metric(t, worker, "triggerflow_images_fetch_failures_total", prometheus.Labels{"reason": reason}),
			"image fetches that failed as %s (the revived worker's count)", reason)
	}
	requireNoImageErrors(t, worker.proc)

	// The bucket drains but for what killed workers left: the last
	// delivery of every object's task came within imageReleaseDelay before
	// a kill, so its deletion was still pending in the killed process.
	// Release runs a moment after the receiver's 200; a second covers it.
	const releaseSlack = time.Second
	leakedAtKill := func(last time.Time) bool {
		for _, k := range kills {
			if k.at.After(last) && !k.at.After(last.Add(imageReleaseDelay+releaseSlack)) {
				return true
			}
		}
		return false
	}
	var leaked []*jetstream.ObjectInfo
	testenv.Eventually(t, time.Minute, "the task image bucket to hold only images a killed worker was to delete", func() error {
		acc, _, _, _ := st.rcv.snapshot()
		last := map[string]time.Time{}
		for _, d := range acc {
			last[d.eventID] = d.at
		}
		leaked = leaked[:0]
		var left []string
		for _, oi := range objectsIn(t, js, taskImages) {
			at, ok := last[imageEventID(oi.Name)]
			if ok && leakedAtKill(at) {
				leaked = append(leaked, oi)
				continue
			}
			left = append(left, fmt.Sprintf("%s (last delivered %s)", oi.Name, at.Format(time.StampMilli)))
		}
		if len(left) > 0 {
			return fmt.Errorf("%d objects still stored: %s", len(left), strings.Join(left, ", "))
		}
		return nil
	})
	var leakedBytes uint64
	for _, oi := range leaked {
		leakedBytes += oi.Size
	}
	// What is left besides those objects are the deleted objects' meta
	// messages (delete markers), a few hundred bytes each.
	bucketBytes := st.metric(t, worker, "triggerflow_images_bucket_bytes", prometheus.Labels{"bucket": "tasks"})
	require.LessOrEqual(t, bucketBytes, float64(leakedBytes)+float64(images)*1024,
		"the task bucket holds the %d objects killed workers left (%d bytes) and delete markers", len(leaked), leakedBytes)
	if len(leaked) > 0 {
		t.Logf("images: %d objects (%d bytes) whose delayed deletion died with a killed worker stay until the bucket's TTL (nats.imageMaxAge)",
			len(leaked), leakedBytes)
	}

	t.Logf("images: %8s drained; %d changes (%d images, %.0f stored by the watcher), %d deliveries (%d duplicates), "+
		"%d kills mid-fetch; task bucket %.0f bytes after the drain",
		since(), len(writes), images, stored, len(acc), len(acc)-st.rcv.distinct(), len(kills), bucketBytes)
	for _, s := range []service{st.ingests[0], worker, st.watcher} {
		require.False(t, s.exited(), "%s exited on its own", s.name)
	}
}

// workerKill is one SIGKILL of the worker in the middle of a fetch.
type workerKill struct {
	at       time.Time
	frozeFor time.Duration // from the freeze to the kill
	pid      int
	subject  string // the chunk subject of the object being fetched
	object   string
	size     uint64
	passed   int // bytes of the first chunk's message the worker received
	// consumerDelivered is how many chunks the server had sent on the
	// fetch's consumer: into the proxy's socket, not necessarily further.
	consumerDelivered uint64
	// armedBy is the delivery whose acceptance armed the proxy: one of a
	// batch the kill interrupted.
	armedBy delivery
}

// repeatedAcrossKills describes, per kill, the deliveries made before it
// (after the kill before) that were made again after it: how many, and
// how long before the kill the earliest of them was first made. A request
// counts as made when it arrived: a killed worker's last request may be
// accepted after the kill.
func repeatedAcrossKills(acc []delivery, kills []workerKill) string {
	var out []string
	for i, k := range kills {
		var from time.Time
		if i > 0 {
			from = kills[i-1].at
		}
		first := map[ks]time.Time{}
		again := map[ks]bool{}
		for _, d := range acc {
			key := ks{d.key, d.seq}
			switch {
			case d.arrived.After(from) && !d.arrived.After(k.at):
				if _, ok := first[key]; !ok {
					first[key] = d.arrived
				}
			case d.arrived.After(k.at):
				if _, ok := first[key]; ok {
					again[key] = true
				}
			}
		}
		var longest time.Duration
		for key := range again {
			longest = max(longest, k.at.Sub(first[key]))
		}
		out = append(out, fmt.Sprintf("kill %d: %d, the earliest %s before it", i, len(again), longest.Round(time.Millisecond)))
	}
	return strings.Join(out, "; ")
}

// bigDocument is change seq of document key: about 1.2 MiB of JSON with
// pseudo-random content, so before and after differ throughout, and with
// what the canonical form rewrites (spaces, characters encoding/json
// escapes, a number written "2.50").
func bigDocument(key string, seq int) []byte {
	h := fnv.New64a()
	h.Write([]byte(key))
	rng := rand.New(rand.NewPCG(h.Sum64(), uint64(seq)))
	raw := make([]byte, 900<<10)
	for i := 0; i+8 <= len(raw); i += 8 {
		binary.LittleEndian.PutUint64(raw[i:], rng.Uint64())
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, `{ "seq": %d, "key": %q, "note": "<b>&</b> é ✓ \u2028",
  "nested": {"n": [1, 2.50, true, null], "s": "%d"},
  "blob": "`, seq, key, seq*seq)
	b.WriteString(base64.StdEncoding.EncodeToString(raw)) // nothing to escape
	b.WriteString(`" }`)
	return b.Bytes()
}

// requireNoImageErrors fails if any incarnation of the worker logged a
// missing or corrupt image.
func requireNoImageErrors(t *testing.T, p *proc) {
	t.Helper()
	var lines []string
	for _, inc := range p.incarnations(t) {
		for line := range strings.Lines(inc.output) {
			if strings.Contains(line, "IMAGE_MISSING") || strings.Contains(line, "image-missing") ||
				strings.Contains(line, "missing from the image bucket") || strings.Contains(line, "does not match its digest") {
				lines = append(lines, strings.TrimSpace(line))
			}
		}
	}
	require.Empty(t, lines, "the worker reported missing or corrupt images")
}

// testJetStream is the test's own JetStream client, straight to the
// server.
func testJetStream(t *testing.T, natsURL string) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(natsURL)
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	return js
}

// fetchConsumer returns the consumer of the task image stream that reads
// subject, nil if there is none.
func fetchConsumer(t *testing.T, js jetstream.JetStream, subject string) *jetstream.ConsumerInfo {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, taskImagesStream)
	require.NoError(t, err)
	l := s.ListConsumers(ctx)
	var found *jetstream.ConsumerInfo
	for ci := range l.Info() {
		// The subject may be cut short where the proxy's read ended.
		if strings.HasPrefix(ci.Config.FilterSubject, subject) && len(subject) > len("$O."+taskImages+".C.") {
			found = ci
		}
	}
	require.NoError(t, l.Err())
	return found
}

// objectOfChunks names the object whose chunks are on subject, and its
// size.
func objectOfChunks(t *testing.T, js jetstream.JetStream, subject string) (string, uint64) {
	t.Helper()
	nuid := strings.TrimPrefix(subject, "$O."+taskImages+".C.")
	for _, oi := range objectsIn(t, js, taskImages) {
		if nuid != "" && strings.HasPrefix(oi.NUID, nuid) {
			return oi.Name, oi.Size
		}
	}
	return "(unknown object " + nuid + ")", 0
}

// objectsIn lists the objects of an image bucket. It reads each object's
// newest meta message from the bucket's stream rather than using
// ObjectStore.List, whose watcher can wait forever for the end of the
// listing while objects are being deleted.
func objectsIn(t *testing.T, js jetstream.JetStream, bucket string) []*jetstream.ObjectInfo {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, "OBJ_"+bucket)
	require.NoError(t, err)
	info, err := s.Info(ctx, jetstream.WithSubjectFilter("$O."+bucket+".M.>"))
	require.NoError(t, err)
	var out []*jetstream.ObjectInfo
	for subj := range info.State.Subjects {
		m, err := s.GetLastMsgForSubject(ctx, subj)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		require.NoError(t, err)
		var oi jetstream.ObjectInfo
		require.NoError(t, json.Unmarshal(m.Data, &oi), "meta message of %s", subj)
		if !oi.Deleted {
			out = append(out, &oi)
		}
	}
	return out
}

// imageEventID is the event id in an image's object name,
// "<tenant>/<event id>/<before|after>" (images.ObjectName).
func imageEventID(name string) string {
	_, rest, _ := strings.Cut(name, "/")
	i := strings.LastIndex(rest, "/")
	if i < 0 {
		return rest
	}
	return rest[:i]
}

// natsProxy forwards TCP connections to a nats-server. Armed, it freezes
// the first connection on which the server sends a chunk of an object of
// bucket: it passes that read on and then nothing more in either
// direction, until the client goes away. The client is then inside an
// object store fetch that has begun and cannot finish.
type natsProxy struct {
	ln       net.Listener
	url      string
	upstream string
	pattern  []byte // the protocol line of a chunk delivery: "MSG $O.<bucket>.C."

	mu     sync.Mutex
	armed  bool
	conns  map[net.Conn]struct{}
	frozen chan frozenFetch
	wg     sync.WaitGroup
}

// frozenFetch is a fetch the proxy froze.
type frozenFetch struct {
	subject string // $O.<bucket>.C.<nuid>, possibly cut short by the read's end
	passed  int    // bytes from the chunk's protocol line on that reached the client
	at      time.Time
}

func startNATSProxy(t testing.TB, natsURL, bucket string) *natsProxy {
	t.Helper()
	u, err := url.Parse(natsURL)
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &natsProxy{
		ln: ln, url: "nats://" + ln.Addr().String(), upstream: u.Host,
		pattern: []byte("MSG $O." + bucket + ".C."),
		conns:   map[net.Conn]struct{}{}, frozen: make(chan frozenFetch, 1),
	}
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(func() {
		ln.Close()
		p.mu.Lock()
		for c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
	return p
}

// arm makes the proxy freeze the next chunk delivery.
func (p *natsProxy) arm() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.armed = true
}

func (p *natsProxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.wg.Add(1)
		go p.pipe(c)
	}
}

func (p *natsProxy) track(c net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.conns[c] = struct{}{}
}

func (p *natsProxy) untrack(cs ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range cs {
		delete(p.conns, c)
		c.Close()
	}
}

func (p *natsProxy) pipe(client net.Conn) {
	defer p.wg.Done()
	server, err := net.Dial("tcp", p.upstream)
	if err != nil {
		client.Close()
		return
	}
	p.track(client)
	p.track(server)
	defer p.untrack(client, server)
	clientGone := make(chan struct{})
	go func() {
		_, _ = io.Copy(server, client)
		close(clientGone)
	}()
	buf := make([]byte, 32<<10)
	var tail []byte // the end of the previous read, for a line split across reads
	for {
		n, err := server.Read(buf)
		if n > 0 {
			if f, ok := p.match(tail, buf[:n]); ok {
				_, _ = client.Write(buf[:n])
				p.frozen <- f
				// Frozen: nothing more reaches the client, until it dies.
				<-clientGone
				return
			}
			if _, err := client.Write(buf[:n]); err != nil {
				return
			}
			tail = append(tail[:0], buf[max(0, n-len(p.pattern)):n]...)
		}
		if err != nil {
			return
		}
	}
}

// match reports, when armed, whether read (after tail) holds a chunk
// delivery, and disarms.
func (p *natsProxy) match(tail, read []byte) (frozenFetch, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.armed {
		return frozenFetch{}, false
	}
	window := append(append([]byte(nil), tail...), read...)
	i := bytes.Index(window, p.pattern)
	if i < 0 {
		return frozenFetch{}, false
	}
	p.armed = false
	subj := window[i+len("MSG "):]
	if j := bytes.IndexByte(subj, ' '); j >= 0 {
		subj = subj[:j]
	}
	return frozenFetch{subject: string(subj), passed: len(window) - i, at: time.Now()}, true
}
