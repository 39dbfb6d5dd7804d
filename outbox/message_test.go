package outbox

import "testing"

// TestHoldsOrderingKey walks every status, keyed and not, released and not:
// only a keyed message that is pending, claimed, or an unreleased dead letter
// holds its key (pgoutbox_holds_ordering_key in schema/00002).
func TestHoldsOrderingKey(t *testing.T) {
	for _, tc := range []struct {
		key      string
		status   Status
		released bool
		want     bool
	}{
		{"k", StatusPending, false, true},
		{"k", StatusClaimed, false, true},
		{"k", StatusDeadLetter, false, true},
		{"k", StatusDeadLetter, true, false},
		{"k", StatusDelivered, false, false},
		{"", StatusPending, false, false},
		{"", StatusClaimed, false, false},
		{"", StatusDeadLetter, false, false},
		{"", StatusDeadLetter, true, false},
		{"", StatusDelivered, false, false},
	} {
		m := Message{OrderingKey: tc.key, Status: tc.status, OrderingKeyReleased: tc.released}
		if got := m.HoldsOrderingKey(); got != tc.want {
			t.Errorf("key %q, %s, released %t: HoldsOrderingKey %t, want %t", tc.key, tc.status, tc.released, got, tc.want)
		}
	}
}
