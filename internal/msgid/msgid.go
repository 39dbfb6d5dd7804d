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
	// Only digits, the first not a zero: that is Format's output, and it
	// rules out the sign and leading zeros ParseInt would take, without
	// formatting n again to compare (an allocation per receipt acked).
	if s == "" || s[0] < '1' || s[0] > '9' {
		return 0, false
	}
	for i := 1; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(s, 10, 64) // fails on overflow
	if err != nil {
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
