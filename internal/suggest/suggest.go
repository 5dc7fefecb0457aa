// Package suggest finds the known name a mistyped one was meant to be, for
// the "did you mean" of the CLI's unknown commands and the config file's
// unknown fields.
package suggest

import "strings"

// Distance is the Levenshtein distance of a and b, in bytes.
func Distance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// Closest returns the candidate nearest to word by Distance, ignoring
// case (the first of equally near ones), or "" when there is none within
// maxDist; a negative maxDist allows any distance.
func Closest(word string, candidates []string, maxDist int) string {
	best, bestD := "", -1
	w := strings.ToLower(word)
	for _, c := range candidates {
		d := Distance(w, strings.ToLower(c))
		if (maxDist < 0 || d <= maxDist) && (bestD < 0 || d < bestD) {
			best, bestD = c, d
		}
	}
	return best
}
