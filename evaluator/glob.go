package evaluator

import (
	"fmt"
	"path"
	"strings"
)

// glob is a precompiled collection pattern with path.Match semantics over
// '/'-separated segments.
//
// Trigger validation allows only '*' as a wildcard, and '*' never matches
// '/', so a pattern matches only collections with as many segments as it
// has, each segment matching on its own. That lets the index bucket globs by
// segment count and first segment, and lets a segment match without
// backtracking. Patterns using '?', '[' or '\\' (which validation rejects,
// but an Index may be built from any trigger) fall back to path.Match.
type glob struct {
	source string
	segs   []segment // nil when general
	// general is set for patterns outside the '*'-only subset.
	general bool
}

type segKind uint8

const (
	segLiteral segKind = iota // the segment must equal lit
	segAny                    // "*": any segment, including an empty one
	segStar                   // literal parts separated by '*'
)

type segment struct {
	kind segKind
	lit  string
	// parts are the literals around the stars of a segStar segment; the
	// first is a prefix, the last a suffix, the others must appear in order.
	parts []string
}

// compileGlob precompiles pattern; a malformed one wraps path.ErrBadPattern.
func compileGlob(pattern string) (glob, error) {
	if _, err := path.Match(pattern, ""); err != nil {
		return glob{}, fmt.Errorf("collection pattern %q: %w", pattern, err)
	}
	if strings.ContainsAny(pattern, `?[\`) {
		return glob{source: pattern, general: true}, nil
	}
	g := glob{source: pattern}
	for seg := range strings.SplitSeq(pattern, "/") {
		switch {
		case !strings.Contains(seg, "*"):
			g.segs = append(g.segs, segment{kind: segLiteral, lit: seg})
		case strings.Trim(seg, "*") == "":
			g.segs = append(g.segs, segment{kind: segAny})
		default:
			g.segs = append(g.segs, segment{kind: segStar, parts: strings.Split(seg, "*")})
		}
	}
	return g, nil
}

// literal reports whether the pattern has no wildcard at all, so an exact
// map lookup can replace matching.
func (g *glob) literal() bool {
	if g.general {
		return false
	}
	for _, s := range g.segs {
		if s.kind != segLiteral {
			return false
		}
	}
	return true
}

// match reports whether collection matches the pattern, exactly as
// path.Match(g.source, collection) would.
func (g *glob) match(collection string) bool {
	if g.general {
		ok, _ := path.Match(g.source, collection)
		return ok
	}
	if segmentCount(collection) != len(g.segs) {
		return false
	}
	rest := collection
	for i := range g.segs {
		seg := rest
		if j := strings.IndexByte(rest, '/'); j >= 0 {
			seg, rest = rest[:j], rest[j+1:]
		}
		if !g.segs[i].match(seg) {
			return false
		}
	}
	return true
}

func (s *segment) match(seg string) bool {
	switch s.kind {
	case segLiteral:
		return seg == s.lit
	case segAny:
		return true
	}
	first, last := s.parts[0], s.parts[len(s.parts)-1]
	if len(seg) < len(first)+len(last) || !strings.HasPrefix(seg, first) || !strings.HasSuffix(seg, last) {
		return false
	}
	// With '*' as the only wildcard, taking each middle literal at its
	// leftmost position never loses a match.
	mid := seg[len(first) : len(seg)-len(last)]
	for _, p := range s.parts[1 : len(s.parts)-1] {
		i := strings.Index(mid, p)
		if i < 0 {
			return false
		}
		mid = mid[i+len(p):]
	}
	return true
}

// segmentCount is the number of '/'-separated segments of a collection.
func segmentCount(collection string) int { return strings.Count(collection, "/") + 1 }
