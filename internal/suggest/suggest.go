// Package suggest finds the name a mistyped one most likely meant, for the
// "did you mean" hints of the trigger and configuration loaders.
package suggest

import (
	"slices"
	"strings"
)

// MaxDistance is how many single-character edits a typo may be from the name
// it meant; anything further is more likely a different name than a typo.
const MaxDistance = 2

// Closest returns the candidate nearest to name by case-insensitive edit
// distance, or "" when none is within MaxDistance. Ties go to the candidate
// that sorts first, so the answer does not depend on the candidates' order.
func Closest(name string, candidates []string) string {
	sorted := slices.Sorted(slices.Values(candidates))
	lower := strings.ToLower(name)
	best, bestD := "", MaxDistance+1
	for _, c := range sorted {
		if d := Distance(lower, strings.ToLower(c)); d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

// Distance is the Levenshtein distance between a and b: the fewest
// single-character insertions, deletions and substitutions that turn one
// into the other. It counts characters (runes), not bytes.
func Distance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}
