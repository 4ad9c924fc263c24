package pgsource

import (
	"cmp"
	"fmt"
	"strconv"

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

// parsePosition decodes a token. "" is the zero position. A bare 16-digit
// LSN is accepted as the commit position at that LSN, so an operator can
// resume from an LSN read off pg_replication_slots or pg_waldump.
func parsePosition(s string) (position, error) {
	switch len(s) {
	case 0:
		return position{}, nil
	case lsnDigits:
		c, err := parseHex(s, 64)
		if err != nil {
			return position{}, fmt.Errorf("%w: %q: %v", ErrInvalidPosition, s, err)
		}
		return commitPosition(pglogrepl.LSN(c)), nil
	case positionLen:
	default:
		return position{}, fmt.Errorf("%w: %q is not a pgsource position (want CCCCCCCCCCCCCCCC-LLLLLLLLLLLLLLLL-SSSSSSSS)", ErrInvalidPosition, shorten(s))
	}
	if s[16] != '-' || s[33] != '-' {
		return position{}, fmt.Errorf("%w: %q: fields must be separated by '-'", ErrInvalidPosition, s)
	}
	c, err1 := parseHex(s[0:16], 64)
	l, err2 := parseHex(s[17:33], 64)
	q, err3 := parseHex(s[34:42], 32)
	for _, err := range []error{err1, err2, err3} {
		if err != nil {
			return position{}, fmt.Errorf("%w: %q: %v", ErrInvalidPosition, s, err)
		}
	}
	return position{commit: pglogrepl.LSN(c), lsn: pglogrepl.LSN(l), seq: uint32(q)}, nil
}

// parseHex insists on uppercase digits so that every accepted token is the
// canonical one and byte-wise comparison of stored tokens stays valid.
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
