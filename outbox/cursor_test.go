package outbox

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/pgoutbox/pgoutbox/internal/keywalk"
)

func keyedMessages(keys ...string) ([]Message, []int64) {
	ms := make([]Message, len(keys))
	ids := make([]int64, len(keys))
	for i, k := range keys {
		ms[i] = Message{OrderingKey: k, AvailableAt: time.Unix(0, 0)}
		ids[i] = int64(i + 1)
	}
	return ms, ids
}

// Each claimer takes its own turns through the keys: one claimer's walk
// does not move another's place.
func TestClaimersKeepTheirOwnPlaceInTheKeys(t *testing.T) {
	c := newClaimCursors(time.Now)
	from := c.start("q", "a", 100)
	ms, ids := keyedMessages("k1", "k2", "k3")
	c.record("q", "a", from, 100, ms, ids, keyWalk{heads: 3})
	if got := c.start("q", "a", 100).key; got != "k3" {
		t.Errorf("claimer a starts after %q, want k3", got)
	}
	if got := c.start("q", "b", 100).key; got != "" {
		t.Errorf("claimer b starts after %q, want the first key", got)
	}
	if got := c.start("other", "a", 100).key; got != "" {
		t.Errorf("claimer a on another lane starts after %q, want the first key", got)
	}
}

// A walk that read more heads held by others than it took sends its claimer
// to a key seen served before; one that was not crowded keeps strict turns.
func TestACrowdedWalkJumpsToAKeySeenBefore(t *testing.T) {
	c := newClaimCursors(time.Now)
	var seen []string
	for i := range 20 {
		keys := []string{fmt.Sprintf("k%02d-a", i), fmt.Sprintf("k%02d-b", i)}
		seen = append(seen, keys...)
		ms, ids := keyedMessages(keys...)
		from := c.start("q", "a", 100)
		c.record("q", "a", from, 100, ms, ids, keyWalk{heads: 2, skipped: 1}) // 1 held for 2 taken: not crowded
		if got := c.start("q", "a", 100).key; got != keys[1] {
			t.Fatalf("after an uncrowded walk the claimer starts after %q, want %q", got, keys[1])
		}
	}
	jumps := map[string]bool{}
	for range 50 {
		from := c.start("q", "a", 100)
		ms, ids := keyedMessages("z1", "z2")
		c.record("q", "a", from, 100, ms, ids, keyWalk{heads: 2, skipped: 2}) // 2 held for 2 taken: crowded
		got := c.start("q", "a", 100).key
		if !slices.Contains(append(seen, "z1", "z2"), got) {
			t.Fatalf("a crowded walk sent the claimer to %q, a key never served", got)
		}
		jumps[got] = true
	}
	if len(jumps) < 2 {
		t.Errorf("50 crowded walks all jumped to %v; want keys spread over the sample", jumps)
	}
}

// The sample and the claimers' places are bounded, whatever the number of
// keys served and of claimers.
func TestKeyCursorsAreBounded(t *testing.T) {
	c := newClaimCursors(time.Now)
	for i := range 3 * keywalk.MaxClaimers {
		claimer := fmt.Sprint("claimer-", i)
		keys := make([]string, 50)
		for j := range keys {
			keys[j] = fmt.Sprintf("key-%d-%d", i, j)
		}
		ms, ids := keyedMessages(keys...)
		c.record("q", claimer, c.start("q", claimer, 100), 100, ms, ids, keyWalk{heads: len(keys)})
	}
	cur := c.m["q"]
	if cur.keys.Len() > keywalk.MaxClaimers {
		t.Errorf("%d claimers' places kept, want at most %d", cur.keys.Len(), keywalk.MaxClaimers)
	}
	if len(cur.sample) > sampleKeys {
		t.Errorf("%d sampled keys kept, want at most %d", len(cur.sample), sampleKeys)
	}
}

// Rows the key walk did not take (-1) count for nothing; the others count
// as heads taken, with the most held heads any of them passed.
func TestKeyWalkCountsOnlyTheWalksRows(t *testing.T) {
	var w keyWalk
	for _, skipped := range []int64{-1, 0, 3, -1, 1} {
		w.add(skipped)
	}
	if w != (keyWalk{heads: 3, skipped: 3}) {
		t.Errorf("walk %+v, want 3 heads and 3 skipped", w)
	}
}
