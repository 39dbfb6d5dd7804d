package relay_test

import (
	"context"
	"encoding/json"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pgoutbox/pgoutbox/memstore"
	"github.com/pgoutbox/pgoutbox/outbox"
	"github.com/pgoutbox/pgoutbox/relay"
)

// A heartbeat interval that renews a lease after it lapsed is refused: with
// Lease 1 s and HeartbeatInterval 900 ms, a message claimed 0.6 of an
// interval into the ticker's period was renewed only 1.26 s after its claim,
// and the relay reclaimed its own in-flight message (4 handler calls).
func TestHeartbeatIntervalMustRenewInTime(t *testing.T) {
	ok := func(context.Context, outbox.Message) error { return nil }
	for _, hb := range []time.Duration{900 * time.Millisecond, 501 * time.Millisecond} {
		_, err := relay.New(memstore.New(), relay.Config{Lane: "l", Target: "t", Handler: ok, Lease: time.Second, HeartbeatInterval: hb})
		var verr *outbox.ValidationError
		if !errors.As(err, &verr) || verr.Field != "heartbeat_interval" {
			t.Errorf("heartbeat %s with a 1s lease: %v", hb, err)
		}
	}
	if _, err := relay.New(memstore.New(), relay.Config{Lane: "l", Target: "t", Handler: ok, Lease: time.Second, HeartbeatInterval: 500 * time.Millisecond}); err != nil {
		t.Errorf("heartbeat of half the lease refused: %v", err)
	}
}

// At the longest interval allowed (half the lease), a handler that runs 2.5
// leases keeps its message: one call, one attempt, whatever the phase of the
// heartbeat when the message was claimed.
func TestHeartbeatKeepsALongHandlersLease(t *testing.T) {
	const lease = 400 * time.Millisecond
	for _, phase := range []time.Duration{0, lease / 8, lease / 4, 3 * lease / 8} {
		t.Run(phase.String(), func(t *testing.T) {
			t.Parallel()
			heartbeatPhase(t, lease, phase)
		})
	}
}

func heartbeatPhase(t *testing.T, lease, phase time.Duration) {
	store := memstore.New()
	var calls atomic.Int32
	r, err := relay.New(store, relay.Config{
		Lane: "l", Target: "t", Lease: lease, HeartbeatInterval: lease / 2,
		PollInterval: 10 * time.Millisecond,
		Handler: func(ctx context.Context, _ outbox.Message) error {
			calls.Add(1)
			select {
			case <-time.After(5 * lease / 2):
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	time.Sleep(phase)
	m, err := store.Enqueue(t.Context(), outbox.Draft{Lane: "l", Target: "t", Payload: json.RawMessage(`{}`)})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, _ := store.Get(t.Context(), m.Message.ID)
		if got.Status == outbox.StatusDelivered {
			if got.AttemptCount != 1 || calls.Load() != 1 {
				t.Errorf("phase %s: %d calls, %d attempts; want 1 and 1", phase, calls.Load(), got.AttemptCount)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("phase %s: not delivered: %+v", phase, got)
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Error(err)
	}
}
