package msgid

import (
	"slices"
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
