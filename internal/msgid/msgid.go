// Package msgid owns the form of message ids that callers see: the decimal
// form of a positive 64-bit integer, without sign, leading zeros or spaces.
// Every store in this module issues ids in this form and accepts only it, so
// "007" or "+7" name no message anywhere (a caller who reformats ids gets
// "not found", never another message).
package msgid

import "strconv"

// Format is the form of id that callers see.
func Format(id int64) string { return strconv.FormatInt(id, 10) }

// Parse accepts exactly what Format returns for a positive id.
func Parse(s string) (int64, bool) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 || strconv.FormatInt(n, 10) != s {
		return 0, false
	}
	return n, true
}

// Unique returns ids without repeats, in their first order: a request that
// names a message twice acts on it once and reports it once.
func Unique(ids []string) []string {
	seen := make(map[string]struct{}, len(ids))
	out := make([]string, 0, len(ids))
	for _, id := range ids {
		if _, dup := seen[id]; !dup {
			seen[id] = struct{}{}
			out = append(out, id)
		}
	}
	return out
}
