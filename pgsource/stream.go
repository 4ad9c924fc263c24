package pgsource

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/triggerflow/triggerflow/internal/backoff"
	"github.com/triggerflow/triggerflow/watcher"
)

// itemBuffer decouples reading the socket from emitting: while emit blocks,
// the reader keeps answering the server (see reader.push).
const itemBuffer = 1024

// Watch streams the changes committed after position after ("" starts at
// the slot's confirmed position) until ctx is done, emit fails, or an
// unrecoverable error occurs. It reconnects with backoff after connection
// failures, resuming after the last emitted change. Only one Watch runs at
// a time.
func (s *Source) Watch(ctx context.Context, after string, emit func(watcher.Change) error) error {
	from, err := parsePosition(after)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	switch {
	case s.closed:
		s.mu.Unlock()
		return ErrClosed
	case s.watching:
		s.mu.Unlock()
		return ErrWatching
	}
	s.watching = true
	wctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	s.stopWatch, s.watchDone = stop, done
	s.mu.Unlock()

	err = s.watch(wctx, from, after != "", emit)

	stop()
	s.mu.Lock()
	s.watching, s.stopWatch, s.watchDone = false, nil, nil
	closed := s.closed
	s.mu.Unlock()
	if closed && ctx.Err() == nil && errors.Is(err, context.Canceled) {
		err = ErrClosed
	}
	close(done) // only now: Close returning lets its caller cancel ctx
	return err
}

func (s *Source) watch(ctx context.Context, from position, hasFrom bool, emit func(watcher.Change) error) error {
	dec := newDecoder(s, s.prog, from, hasFrom, emit)
	retry := backoff.Exponential{Initial: s.cfg.ReconnectInitial, Max: s.cfg.ReconnectMax}
	checked := false
	for {
		var progressed bool
		var err error
		if !checked {
			err = s.checkStart(ctx, from)
			checked = err == nil
		}
		if checked {
			progressed, err = s.stream(ctx, dec)
		}
		var ee *emitError
		switch {
		case errors.As(err, &ee):
			return ee.err
		case ctx.Err() != nil:
			return ctx.Err()
		case !recoverable(err):
			return fmt.Errorf("pgsource: watch slot %s: %w", s.cfg.Slot, err)
		}
		if progressed {
			retry.Reset()
		}
		s.metrics.reconnects.WithLabelValues(s.cfg.Tenant).Inc()
		wait := retry.Next()
		s.log.Warn("replication stream lost; reconnecting", "error", err, "backoff", wait)
		if !backoff.Sleep(ctx, wait) {
			return ctx.Err()
		}
	}
}

// checkStart fails fast on what no reconnect can fix.
func (s *Source) checkStart(ctx context.Context, from position) error {
	var exists bool
	if err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1)`, s.cfg.Publication).Scan(&exists); err != nil {
		return fmt.Errorf("pgsource: look up publication: %w", err)
	}
	if !exists {
		return fmt.Errorf("%w: %q", ErrPublicationMissing, s.cfg.Publication)
	}
	if from.commit == 0 {
		return nil
	}
	head, err := s.insertLSN(ctx)
	if err != nil {
		return err
	}
	if from.commit > head {
		return fmt.Errorf("%w: %s lies beyond the server's WAL at %s (a token from another server?)", ErrInvalidPosition, from, head)
	}
	return nil
}

// recoverable tells connection trouble, worth a reconnect, from errors a
// reconnect would only repeat.
func recoverable(err error) bool {
	if err == nil {
		return true
	}
	for _, e := range []error{ErrPublicationMissing, ErrSlotMissing, ErrInvalidPosition, errProtocol, ErrInvalidConfig, ErrClosed} {
		if errors.Is(err, e) {
			return false
		}
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code[:2] {
		case "28", // invalid authorization
			"3D", // database does not exist
			"42", // permission denied, undefined object, syntax
			"0A": // feature not supported
			return false
		}
		// 55000: wal_level was lowered, or the slot was invalidated
		// (max_slot_wal_keep_size): its WAL is gone.
		return pgErr.Code != "55000"
	}
	return true
}

// classify names the well-known unrecoverable server errors.
func classify(err error) error {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "42704" {
		return err
	}
	switch {
	case strings.Contains(pgErr.Message, "publication"):
		return fmt.Errorf("%w: %w", ErrPublicationMissing, err)
	case strings.Contains(pgErr.Message, "replication slot"):
		return fmt.Errorf("%w: %w", ErrSlotMissing, err)
	}
	return err
}

// stream runs one replication connection. It reports whether a transaction
// was read completely, which resets the reconnect backoff: a stream that
// keeps failing on the same transaction should back off.
func (s *Source) stream(ctx context.Context, dec *decoder) (progressed bool, err error) {
	conn, err := pgconn.ConnectConfig(ctx, s.replConfig)
	if err != nil {
		return false, fmt.Errorf("pgsource: replication connection: %w", err)
	}
	pid := conn.PID()
	closed := false
	hangUp := func() {
		if closed {
			return
		}
		closed = true
		closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = conn.Close(closeCtx)
		s.awaitRelease(closeCtx, pid)
	}
	defer hangUp()

	base, err := s.slotFlush(ctx)
	if err != nil {
		return false, err
	}
	dec.prog.setBase(base)
	dec.reset(base)
	start := dec.startLSN()
	err = pglogrepl.StartReplication(ctx, conn, s.cfg.Slot, start, pglogrepl.StartReplicationOptions{
		Mode: pglogrepl.LogicalReplication,
		PluginArgs: []string{
			"proto_version '1'",
			"publication_names " + publicationNames(s.cfg.Publication),
		},
	})
	if err != nil {
		return false, classify(fmt.Errorf("pgsource: start replication at %s: %w", start, err))
	}
	s.log.Debug("replication started", "from", start, "slotConfirmed", base)

	items := make(chan item, itemBuffer)
	rctx, stop := context.WithCancel(ctx)
	r := &reader{conn: conn, prog: dec.prog, items: items, standby: s.cfg.StandbyTimeout, kickC: make(chan struct{}, 1)}
	readErr := make(chan error, 1)
	go func() { readErr <- r.run(rctx) }()
	s.mu.Lock()
	s.kick = r.kick
	s.mu.Unlock()

	var decErr error
	commits := dec.commits
	defer func() { progressed = dec.commits > commits }()
	for it := range items {
		if ctx.Err() != nil {
			break // emit cancelled the watch: deliver nothing more
		}
		advanced, err := dec.handle(ctx, it)
		if err != nil {
			decErr = err
			break
		}
		if advanced {
			r.kick()
		}
	}
	stop()
	for range items { // let the reader finish a pending send
	}
	err = <-readErr
	s.mu.Lock()
	s.kick = nil
	s.mu.Unlock()

	r.finish()
	hangUp()

	if decErr != nil {
		return progressed, decErr
	}
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		return progressed, ctx.Err()
	}
	return progressed, classify(err)
}

// awaitRelease waits until the backend pid no longer holds the slot. A
// walsender outlives its connection briefly; without the wait, a Confirm
// or a new Watch right after this one returned would find the slot busy.
func (s *Source) awaitRelease(ctx context.Context, pid uint32) {
	for {
		var active *int64
		err := s.pool.QueryRow(ctx, `SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1`, s.cfg.Slot).Scan(&active)
		if err != nil || active == nil || uint32(*active) != pid {
			return
		}
		t := time.NewTimer(10 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// publicationNames is the pgoutput option value naming one publication:
// a string literal holding a list of identifiers, so the name is quoted as
// an identifier, then as a literal.
func publicationNames(name string) string {
	return "'" + strings.ReplaceAll(pgx.Identifier{name}.Sanitize(), "'", "''") + "'"
}

// slotFlush reads the slot's confirmed_flush_lsn.
func (s *Source) slotFlush(ctx context.Context) (pglogrepl.LSN, error) {
	var text *string
	err := s.pool.QueryRow(ctx, `SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1`, s.cfg.Slot).Scan(&text)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, fmt.Errorf("%w: %q", ErrSlotMissing, s.cfg.Slot)
	}
	if err != nil {
		return 0, fmt.Errorf("pgsource: read slot %s: %w", s.cfg.Slot, err)
	}
	if text == nil {
		return 0, fmt.Errorf("%w: slot %q is not a logical slot", ErrInvalidConfig, s.cfg.Slot)
	}
	return pglogrepl.ParseLSN(*text)
}

// reader owns the replication connection: it reads messages into items and
// sends standby status updates, every standby interval, when the server
// asks, and when kicked after the safe flush advanced. It keeps doing so
// while items is full, so a slow emit does not get the connection killed
// by wal_sender_timeout.
type reader struct {
	conn    *pgconn.PgConn
	prog    *progress
	items   chan<- item
	standby time.Duration
	kickC   chan struct{}

	mu         sync.Mutex
	kicked     bool
	cancelRecv context.CancelFunc

	next time.Time // when the next periodic status update is due
}

// kick asks for a status update now, interrupting a blocked receive.
func (r *reader) kick() {
	r.mu.Lock()
	r.kicked = true
	if r.cancelRecv != nil {
		r.cancelRecv()
	}
	r.mu.Unlock()
	select {
	case r.kickC <- struct{}{}:
	default:
	}
}

func (r *reader) takeKick() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	k := r.kicked
	r.kicked = false
	return k
}

func (r *reader) run(ctx context.Context) error {
	defer close(r.items)
	r.next = time.Now() // report a confirmation made while reconnecting at once
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		if r.takeKick() || !time.Now().Before(r.next) {
			if err := r.sendStatus(ctx); err != nil {
				return err
			}
		}
		msg, interrupted, err := r.receive(ctx)
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case interrupted:
			continue // status due, or kicked
		case err != nil:
			return fmt.Errorf("pgsource: receive: %w", err)
		}
		switch msg := msg.(type) {
		case *pgproto3.CopyData:
			if err := r.copyData(ctx, msg.Data); err != nil {
				return err
			}
		case *pgproto3.ErrorResponse:
			return pgconn.ErrorResponseToPgError(msg)
		case *pgproto3.CopyDone:
			return errors.New("pgsource: server ended the replication stream")
		default:
			// NoticeResponse and the like.
		}
	}
}

// receive waits for a message until the next status update is due or a
// kick interrupts it. An interrupted receive leaves the connection usable:
// pgconn only closes it on errors other than its own deadline.
func (r *reader) receive(ctx context.Context) (msg pgproto3.BackendMessage, interrupted bool, err error) {
	rctx, cancel := context.WithDeadline(ctx, r.next)
	defer cancel()
	r.mu.Lock()
	if r.kicked {
		r.mu.Unlock()
		return nil, true, nil
	}
	r.cancelRecv = cancel
	r.mu.Unlock()
	msg, err = r.conn.ReceiveMessage(rctx)
	r.mu.Lock()
	r.cancelRecv = nil
	r.mu.Unlock()
	if err != nil && rctx.Err() != nil && !r.conn.IsClosed() {
		return nil, true, nil
	}
	return msg, false, err
}

func (r *reader) copyData(ctx context.Context, data []byte) error {
	if len(data) == 0 {
		return nil
	}
	switch data[0] {
	case pglogrepl.PrimaryKeepaliveMessageByteID:
		k, err := pglogrepl.ParsePrimaryKeepaliveMessage(data[1:])
		if err != nil {
			return fmt.Errorf("%w: %w", errProtocol, err)
		}
		r.prog.receivedAt(k.ServerWALEnd)
		if k.ReplyRequested {
			if err := r.sendStatus(ctx); err != nil {
				return err
			}
		}
		// A hint only: dropped when the decoder is behind anyway.
		select {
		case r.items <- item{keepalive: true, lsn: k.ServerWALEnd}:
		default:
		}
		return nil
	case pglogrepl.XLogDataByteID:
		x, err := pglogrepl.ParseXLogData(data[1:])
		if err != nil {
			return fmt.Errorf("%w: %w", errProtocol, err)
		}
		r.prog.receivedAt(x.WALStart)
		// pgconn reuses its read buffer on the next receive.
		return r.push(ctx, item{lsn: x.WALStart, data: bytes.Clone(x.WALData)})
	}
	return nil
}

// push hands it to the decoder, sending status updates while it waits.
func (r *reader) push(ctx context.Context, it item) error {
	select {
	case r.items <- it:
		return nil
	default:
	}
	for {
		t := time.NewTimer(time.Until(r.next))
		select {
		case r.items <- it:
			t.Stop()
			return nil
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		case <-r.kickC:
			t.Stop()
		}
		if err := r.sendStatus(ctx); err != nil {
			return err
		}
	}
}

// finish ends the stream politely once run has returned: a last status
// update, so a confirmation that raced the shutdown is not lost, then the
// CopyDone handshake, after which the server has released the slot (a
// Confirm right after Watch returns can then advance it). Bounded by a
// deadline: a server busy decoding a large transaction may not answer
// soon, and closing the connection ends the stream as well.
func (r *reader) finish() {
	if r.conn.IsClosed() {
		return
	}
	_ = r.conn.Conn().SetDeadline(time.Now().Add(2 * time.Second))
	defer func() { _ = r.conn.Conn().SetDeadline(time.Time{}) }()
	if err := r.sendStatus(context.Background()); err != nil {
		return
	}
	_, _ = pglogrepl.SendStandbyCopyDone(context.Background(), r.conn)
}

// sendStatus reports the safe flush. Until there is one it sends nothing:
// a zero flush would be read as "flushed up to what was written".
func (r *reader) sendStatus(ctx context.Context) error {
	r.next = time.Now().Add(r.standby)
	write, flush := r.prog.status()
	if flush == 0 {
		return nil
	}
	err := pglogrepl.SendStandbyStatusUpdate(ctx, r.conn, pglogrepl.StandbyStatusUpdate{
		WALWritePosition: write,
		WALFlushPosition: flush,
		WALApplyPosition: flush,
	})
	if err != nil {
		return fmt.Errorf("pgsource: send standby status: %w", err)
	}
	return nil
}
