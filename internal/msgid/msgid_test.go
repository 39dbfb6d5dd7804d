package msgid

import (
	"slices"
	"strconv"
	"testing"
)

func TestParseAcceptsOnlyFormat(t *testing.T) {
	for _, id := range []int64{1, 7, 42, 9223372036854775807} {
		if got, ok := Parse(Format(id)); !ok || got != id {
			t.Errorf("Parse(Format(%d)) = %d, %v", id, got, ok)
		}
	}
	for _, s := range []string{"0", "-1", "+1", "+7", "01", "007", " 7", "7 ", "1.0", "1e3", "9223372036854775808", "x", ""} {
		if n, ok := Parse(s); ok {
			t.Errorf("Parse(%q) = %d, want refused", s, n)
		}
	}
}

func TestUnique(t *testing.T) {
	got := Unique([]string{"5", "3", "5", "x", "3"})
	if want := []string{"5", "3", "x"}; !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

// Parse is the inverse of Format, and refuses every other string.
func FuzzParseIsFormatsInverse(f *testing.F) {
	for _, s := range []string{"1", "42", "007", "+7", "-1", "0", "9223372036854775807", "9223372036854775808", "1_000", " 1", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, ok := Parse(s)
		if ok && (n <= 0 || Format(n) != s) {
			t.Errorf("Parse(%q) = %d, not its Format", s, n)
		}
		if m, err := strconv.ParseInt(s, 10, 64); err == nil && m > 0 && Format(m) == s && (!ok || n != m) {
			t.Errorf("Parse(%q) = %d, %v; want %d", s, n, ok, m)
		}
	})
}
