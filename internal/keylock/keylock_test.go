package keylock

import (
	"slices"
	"testing"
)

func TestIDSeparatesParts(t *testing.T) {
	a := ID(Dedupe, "", "l", "t", "k")
	for name, other := range map[string]int64{
		"kind":   ID(Ordering, "", "l", "t", "k"),
		"scope":  ID(Dedupe, "s", "l", "t", "k"),
		"split":  ID(Dedupe, "", "l\x1ft", "", "k"),
		"key":    ID(Dedupe, "", "l", "t", "k2"),
		"target": ID(Dedupe, "", "l", "tk", ""),
	} {
		if other == a {
			t.Errorf("%s: same lock id as the original key", name)
		}
	}
	if ID(Dedupe, "", "l", "t", "k") != a {
		t.Error("the same key gave two ids")
	}
}

func TestOrdered(t *testing.T) {
	if got := Ordered([]int64{5, -3, 5, 0}); !slices.Equal(got, []int64{-3, 0, 5}) {
		t.Errorf("got %v", got)
	}
}
