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

func TestPlacesKeepEachClaimersTurnBounded(t *testing.T) {
	var p Places
	if got := p.Get("a"); got != "" {
		t.Fatalf("an empty Places gives %q", got)
	}
	p.Set("a", "k1")
	p.Set("b", "k7")
	if p.Get("a") != "k1" || p.Get("b") != "k7" {
		t.Fatalf("places a=%q b=%q, want k1 and k7", p.Get("a"), p.Get("b"))
	}
	p.Set("a", "")
	if p.Get("a") != "" || p.Len() != 1 {
		t.Fatalf("after forgetting a: a=%q, %d places", p.Get("a"), p.Len())
	}
	for i := range 3 * MaxClaimers {
		p.Set(string(rune('A'+i%26))+string(rune('0'+i/26)), "k")
		if p.Len() > MaxClaimers {
			t.Fatalf("%d places kept, want at most %d", p.Len(), MaxClaimers)
		}
	}
	last := string(rune('A'+(3*MaxClaimers-1)%26)) + string(rune('0'+(3*MaxClaimers-1)/26))
	if p.Get(last) != "k" {
		t.Errorf("the newest claimer %q has no place", last)
	}
}
