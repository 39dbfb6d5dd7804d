package keywalk

import (
	"slices"
	"testing"
)

func TestNext(t *testing.T) {
	for _, c := range []struct {
		from   string
		served []string
		want   string
	}{
		{"", nil, ""},
		{"", []string{"b", "a", ""}, "b"},
		{"m", []string{"x", "z"}, "z"},
		{"m", []string{"x", "b", "c"}, "c"}, // wrapped: c is served last
		{"m", []string{"m"}, "m"},
		{"m", []string{""}, "m"},
	} {
		if got := Next(c.from, c.served); got != c.want {
			t.Errorf("Next(%q, %q) = %q, want %q", c.from, c.served, got, c.want)
		}
	}
}

func TestLess(t *testing.T) {
	keys := []string{"a", "m", "z", "c", "n"}
	slices.SortFunc(keys, func(a, b string) int {
		if Less("m", a, b) {
			return -1
		}
		if Less("m", b, a) {
			return 1
		}
		return 0
	})
	if want := []string{"n", "z", "a", "c", "m"}; !slices.Equal(keys, want) {
		t.Errorf("walk order after m: %v, want %v", keys, want)
	}
}
