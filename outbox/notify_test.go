package outbox

import (
	"testing"
	"time"
)

func TestNotifyLimiter(t *testing.T) {
	var off *notifyLimiter
	if off.allow("", "l", "t") {
		t.Error("a nil limiter (notifications off) allowed a notification")
	}
	every := &notifyLimiter{last: map[string]time.Time{}}
	first := every.allow("", "l", "t")
	second := every.allow("", "l", "t")
	if !first || !second {
		t.Error("interval 0 must allow every notification")
	}
	l := &notifyLimiter{interval: 50 * time.Millisecond, last: map[string]time.Time{}}
	if !l.allow("", "l", "t") {
		t.Fatal("first notification refused")
	}
	if l.allow("", "l", "t") {
		t.Error("second notification within the interval allowed")
	}
	if !l.allow("", "l", "other") || !l.allow("s", "l", "t") {
		t.Error("another key was limited")
	}
	time.Sleep(60 * time.Millisecond)
	if !l.allow("", "l", "t") {
		t.Error("notification after the interval refused")
	}
	for i := range 2 * maxNotifyKeys {
		l.allow("", "lane", string(rune('a'+i%26))+time.Duration(i).String())
	}
	if len(l.last) > maxNotifyKeys+1 {
		t.Errorf("limiter holds %d keys, bound %d", len(l.last), maxNotifyKeys)
	}
}
