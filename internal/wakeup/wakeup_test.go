package wakeup

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

func TestPayloadRoundTrip(t *testing.T) {
	key := Key("tenant", "lane", "target")
	got, followUp, ok := Parse(Payload(key, 200*time.Millisecond))
	if !ok || got != key || followUp != 200*time.Millisecond {
		t.Errorf("Parse = %q %v %v", got, followUp, ok)
	}
	// A producer of the release before sends the key alone.
	if got, followUp, ok := Parse(key); !ok || got != key || followUp != legacyFollowUp {
		t.Errorf("legacy payload: %q %v %v", got, followUp, ok)
	}
	for _, bad := range []string{"", "a", "a\x1fb", "a\x1fb\x1fc\x1fx", "a\x1fb\x1fc\x1f-1", "a\x1fb\x1fc\x1fd\x1fe"} {
		if _, _, ok := Parse(bad); ok {
			t.Errorf("Parse(%q) accepted", bad)
		}
	}
}

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func TestLimiterCountsCommittedNotifications(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1e9, 0)}
	l := NewLimiter(100*time.Millisecond, clk.now)
	k := Key("", "l", "t")
	if !l.Allow(k) {
		t.Fatal("first enqueue not allowed to notify")
	}
	// Allowed but not yet committed (or deduplicated: nothing sent): the
	// next enqueue must still notify.
	if !l.Allow(k) {
		t.Error("an allowance that never committed spent the slot")
	}
	l.Committed(k)
	clk.add(10 * time.Millisecond)
	if l.Allow(k) {
		t.Error("second notification within the interval allowed")
	}
	if !l.Covered(k) {
		t.Error("an enqueue 10 ms after a committed notification is not covered")
	}
	clk.add(45 * time.Millisecond)
	if l.Covered(k) {
		t.Error("an enqueue that committed 55 ms after the notification counts as covered by a 100 ms follow-up with no margin")
	}
	if !l.Allow(Key("", "l", "other")) || !l.Allow(Key("s", "l", "t")) {
		t.Error("another key was limited")
	}
	clk.add(50 * time.Millisecond)
	if !l.Allow(k) {
		t.Error("notification after the interval refused")
	}
}

func TestLimiterZeroIntervalAlwaysNotifies(t *testing.T) {
	l := NewLimiter(0, time.Now)
	k := Key("", "l", "t")
	l.Committed(k)
	for range 2 {
		if !l.Allow(k) {
			t.Error("interval 0 must allow every notification")
		}
	}
}

func TestLimiterMemoryIsBounded(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1e9, 0)}
	l := NewLimiter(50*time.Millisecond, clk.now)
	for i := range 2 * maxKeys {
		l.Committed(Key("", "lane", fmt.Sprint(i)))
	}
	if len(l.last) > maxKeys {
		t.Errorf("limiter holds %d keys, bound %d", len(l.last), maxKeys)
	}
}
