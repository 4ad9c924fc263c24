package pgsource

import (
	"sync"

	"github.com/jackc/pglogrepl"
)

// maxPendingTxns bounds the completed transactions remembered while their
// changes await Confirm. Forgetting the oldest is safe: a later Confirm
// then flushes to the commit start of its own transaction instead of the
// end of an earlier one.
const maxPendingTxns = 1 << 16

// progress derives the flush LSN reported to the server, the only thing that
// moves the slot's confirmed_flush_lsn, from what the watcher confirmed.
// One progress serves every Watch of a Source: positions are absolute, so
// what one watch learnt about a transaction's end still holds for a
// Confirm that arrives during or after the next.
//
// The server skips, on the next START_REPLICATION, every transaction whose
// commit record starts before the flushed LSN. So a flush is safe when every
// transaction committing before it either had all its changes confirmed or
// had none for this source (filtered by table, tenant, or the checkpoint
// table). The rules, each an application of that:
//
//   - Confirm(p): flush to p's commit LSN (the transactions before p's are
//     confirmed by definition of Confirm).
//   - a completed transaction whose needed changes are all ≤ the confirmed
//     position: flush to its end LSN.
//   - when every change handed out is confirmed: flush to the end of the
//     latest completed transaction, or to the server's WAL end from a
//     keepalive received outside a transaction. This is what releases WAL
//     while other tenants write and keeps a server shutdown from waiting
//     for us, and it never releases an unconfirmed change.
type progress struct {
	mu sync.Mutex

	// base is the slot's confirmed_flush_lsn when the stream started. The
	// server (before PostgreSQL 17) takes a lower flush as is and moves
	// confirmed_flush_lsn backwards, so nothing below base is reported.
	base pglogrepl.LSN
	// flush is the highest safe flush derived so far; it never decreases.
	flush pglogrepl.LSN
	// received is the highest WAL position seen, reported as written.
	received pglogrepl.LSN

	confirmed    position
	hasConfirmed bool
	// need is the highest position handed out (or skipped as already
	// delivered) that the flush must not pass before it is confirmed.
	need    position
	hasNeed bool
	// pending lists completed transactions with needed changes, oldest
	// first: each one's last needed position and end LSN.
	pending []txnEnd
	// idle is the LSN up to which every transaction has been fully read.
	idle pglogrepl.LSN
}

type txnEnd struct {
	last position
	end  pglogrepl.LSN
}

// needed records that p was handed out (or skipped as delivered before) and
// must be confirmed before the flush passes its transaction.
func (g *progress) needed(p position) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.hasNeed || p.compare(g.need) > 0 {
		g.need, g.hasNeed = p, true
	}
}

// txnDone records a completed transaction; last is its highest needed
// position when hadNeed. It reports whether the flush advanced.
func (g *progress) txnDone(last position, hadNeed bool, end pglogrepl.LSN) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if hadNeed {
		if len(g.pending) == maxPendingTxns {
			g.pending = append(g.pending[:0], g.pending[1:]...)
		}
		g.pending = append(g.pending, txnEnd{last: last, end: end})
	}
	g.idle = max(g.idle, end)
	g.observe(end)
	return g.recompute()
}

// caughtUp records a keepalive read outside any transaction: every
// transaction committing before walEnd has been read.
func (g *progress) caughtUp(walEnd pglogrepl.LSN) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.idle = max(g.idle, walEnd)
	g.observe(walEnd)
	return g.recompute()
}

// confirm records that every change up to p is checkpointed and reports
// whether the flush advanced.
func (g *progress) confirm(p position) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.hasConfirmed || p.compare(g.confirmed) > 0 {
		g.confirmed, g.hasConfirmed = p, true
	}
	return g.recompute()
}

func (g *progress) observe(lsn pglogrepl.LSN) { g.received = max(g.received, lsn) }

// receivedAt records WAL seen by the reader.
func (g *progress) receivedAt(lsn pglogrepl.LSN) {
	g.mu.Lock()
	g.observe(lsn)
	g.mu.Unlock()
}

func (g *progress) setBase(lsn pglogrepl.LSN) {
	g.mu.Lock()
	g.base = max(g.base, lsn)
	g.mu.Unlock()
}

func (g *progress) recompute() bool {
	before := g.flush
	if g.hasConfirmed {
		g.flush = max(g.flush, g.confirmed.commit)
		n := 0
		for n < len(g.pending) && g.pending[n].last.compare(g.confirmed) <= 0 {
			g.flush = max(g.flush, g.pending[n].end)
			n++
		}
		g.pending = g.pending[n:]
	}
	if !g.hasNeed || (g.hasConfirmed && g.need.compare(g.confirmed) <= 0) {
		g.flush = max(g.flush, g.idle)
	}
	return g.flush > before
}

// status returns the write and flush positions for a standby status update.
// A zero flush means there is nothing safe to report yet.
func (g *progress) status() (write, flush pglogrepl.LSN) {
	g.mu.Lock()
	defer g.mu.Unlock()
	flush = max(g.base, g.flush)
	return max(g.received, flush), flush
}

// flushLSN is the safe flush derived from confirmations, ignoring base.
func (g *progress) flushLSN() pglogrepl.LSN {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.flush
}
