package pgsource

import (
	"cmp"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pglogrepl"
)

// A position token has three fixed-width uppercase hex fields:
//
//	CCCCCCCCCCCCCCCC-LLLLLLLLLLLLLLLL-SSSSSSSS
//
// C is the LSN where the change's transaction commit record starts (the
// pgoutput Begin message's final LSN), L the LSN of the change's own WAL
// record, S the change's index among those decoded from the same record (a
// COPY writes many rows in one multi-insert record; a primary-key change is
// reported as a delete and a create). One LSN alone cannot be the token:
// transactions are streamed in commit order, but a transaction that started
// earlier and committed later has changes with smaller LSNs than the one
// before it. Commit LSN first makes byte-wise order commit order.
const (
	positionLen = 16 + 1 + 16 + 1 + 8
	lsnDigits   = 16
)

// position is a decoded position token.
type position struct {
	commit pglogrepl.LSN // start of the transaction's commit record
	lsn    pglogrepl.LSN // the change's WAL record
	seq    uint32        // index among the changes of that record
}

func (p position) String() string {
	var b [positionLen]byte
	putHex(b[0:16], uint64(p.commit))
	b[16] = '-'
	putHex(b[17:33], uint64(p.lsn))
	b[33] = '-'
	putHex(b[34:42], uint64(p.seq))
	return string(b[:])
}

func putHex(dst []byte, v uint64) {
	const digits = "0123456789ABCDEF"
	for i := len(dst) - 1; i >= 0; i-- {
		dst[i] = digits[v&0xF]
		v >>= 4
	}
}

// ParsePosition returns the canonical token of pos ("" stays ""): the
// full three-field form, also for a commit LSN given alone. Errors wrap
// ErrInvalidPosition, and so watcher.ErrInvalidPosition, and say what a
// position looks like. It implements watcher.Source.
func (s *Source) ParsePosition(pos string) (string, error) {
	p, err := parsePosition(pos)
	if err != nil || pos == "" {
		return "", err
	}
	return p.String(), nil
}

func (p position) compare(q position) int {
	if c := cmp.Compare(p.commit, q.commit); c != 0 {
		return c
	}
	if c := cmp.Compare(p.lsn, q.lsn); c != 0 {
		return c
	}
	return cmp.Compare(p.seq, q.seq)
}

// commitPosition is the token that sorts before every change of the
// transaction committing at lsn and after every change committed earlier.
func commitPosition(lsn pglogrepl.LSN) position { return position{commit: lsn} }

// positionFormat is what parsePosition's errors say a position looks like.
const positionFormat = "want CCCCCCCCCCCCCCCC-LLLLLLLLLLLLLLLL-SSSSSSSS (commit LSN, change LSN, index; uppercase hexadecimal), " +
	"or a commit LSN alone such as 0/16B3748 or 00000000016B3748"

// parsePosition decodes a token. "" is the zero position. A commit LSN
// alone, in PostgreSQL's X/Y notation or as 16 hex digits, is accepted as
// the commit position at that LSN, so an operator can resume from an LSN
// read off pg_replication_slots or pg_waldump.
func parsePosition(s string) (position, error) {
	invalid := func() (position, error) {
		return position{}, fmt.Errorf("%w: %q is not a pgsource position: %s", ErrInvalidPosition, shorten(s), positionFormat)
	}
	switch {
	case len(s) == 0:
		return position{}, nil
	case strings.Contains(s, "/"):
		c, ok := parseLSN(s)
		if !ok {
			return invalid()
		}
		return commitPosition(c), nil
	case len(s) == lsnDigits:
		c, err := parseHex(s, 64)
		if err != nil {
			return invalid()
		}
		return commitPosition(pglogrepl.LSN(c)), nil
	case len(s) != positionLen || s[16] != '-' || s[33] != '-':
		return invalid()
	}
	c, err1 := parseHex(s[0:16], 64)
	l, err2 := parseHex(s[17:33], 64)
	q, err3 := parseHex(s[34:42], 32)
	if err1 != nil || err2 != nil || err3 != nil {
		return invalid()
	}
	return position{commit: pglogrepl.LSN(c), lsn: pglogrepl.LSN(l), seq: uint32(q)}, nil
}

// parseLSN reads PostgreSQL's X/Y notation: two groups of one to eight
// hexadecimal digits, the high and low 32 bits.
func parseLSN(s string) (pglogrepl.LSN, bool) {
	hi, lo, _ := strings.Cut(s, "/")
	if len(hi) == 0 || len(hi) > 8 || len(lo) == 0 || len(lo) > 8 {
		return 0, false
	}
	h, err1 := parseHex(hi, 32)
	l, err2 := parseHex(lo, 32)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	return pglogrepl.LSN(h<<32 | l), true
}

// parseHex insists on uppercase digits so that every accepted full token
// is already the canonical one, as stored tokens from before
// ParsePosition existed are.
func parseHex(s string, bits int) (uint64, error) {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'A' || c > 'F') {
			return 0, fmt.Errorf("%q is not uppercase hexadecimal", s)
		}
	}
	return strconv.ParseUint(s, 16, bits)
}

func shorten(s string) string {
	const max = 64
	if len(s) <= max {
		return s
	}
	return s[:max] + "…"
}
