package relay_test

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/pgoutbox/pgoutbox/memstore"
	"github.com/pgoutbox/pgoutbox/outbox"
	"github.com/pgoutbox/pgoutbox/relay"
)

func TestExponentialBackoffStaysUnderItsCeiling(t *testing.T) {
	b := relay.ExponentialBackoff(100*time.Millisecond, 2*time.Second)
	for attempt, ceiling := range map[int]time.Duration{
		1: 100 * time.Millisecond, 2: 200 * time.Millisecond, 3: 400 * time.Millisecond,
		5: 1600 * time.Millisecond, 6: 2 * time.Second, 60: 2 * time.Second,
	} {
		var top time.Duration
		for range 2000 {
			d := b(attempt)
			if d < 0 || d > ceiling {
				t.Fatalf("attempt %d: %s outside [0, %s]", attempt, d, ceiling)
			}
			top = max(top, d)
		}
		// Full jitter spreads over the whole range, not just near zero.
		if top < ceiling/2 {
			t.Errorf("attempt %d: largest of 2000 delays %s, ceiling %s", attempt, top, ceiling)
		}
	}
}

func TestPermanent(t *testing.T) {
	base := errors.New("400")
	err := relay.Permanent(base)
	if !relay.IsPermanent(err) || !errors.Is(err, base) || relay.IsPermanent(base) || relay.Permanent(nil) != nil {
		t.Fatal("Permanent does not wrap as documented")
	}
	if !relay.IsPermanent(errors.Join(errors.New("x"), err)) {
		t.Error("a wrapped permanent error is not permanent")
	}
}

// The relay runs on the in-memory store as on Postgres, wake-ups included:
// users can unit-test their handlers with it.
func TestRelayOnMemstore(t *testing.T) {
	store := memstore.New()
	var (
		mu   sync.Mutex
		seen = map[string]int{}
	)
	r, err := relay.New(store, relay.Config{
		Lane: "l", Target: "t", Wakeups: store, PollInterval: time.Hour,
		Handler: func(_ context.Context, m outbox.Message) error {
			mu.Lock()
			defer mu.Unlock()
			seen[m.ID]++
			if seen[m.ID] == 1 && string(m.Payload) == `"flaky"` {
				return errors.New("first try fails")
			}
			return nil
		},
		Backoff: func(int) time.Duration { return 0 },
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error)
	go func() { done <- r.Run(ctx) }()
	for _, p := range []string{`1`, `"flaky"`, `2`} {
		if _, err := store.Enqueue(t.Context(), outbox.Draft{Lane: "l", Target: "t", Payload: json.RawMessage(p)}); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		l, _ := store.List(t.Context(), outbox.ListFilter{Status: outbox.StatusDelivered})
		if len(l) == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of 3 delivered (polling is hourly, so only wake-ups can deliver)", len(l))
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	total := 0
	for _, n := range seen {
		total += n
	}
	if len(seen) != 3 || total != 4 {
		t.Errorf("calls %v, want 3 messages and 4 calls (one retry)", seen)
	}
}

// A handler that asks for a later retry with RetryAfter gets it: the next
// attempt comes no sooner than it asked, even when the backoff says now,
// and not later than the backoff when that is longer.
func TestRetryAfterDelaysTheNextAttempt(t *testing.T) {
	store := memstore.New()
	var (
		mu    sync.Mutex
		calls []time.Time
	)
	r, err := relay.New(store, relay.Config{
		Lane: "l", Target: "t", Wakeups: store, PollInterval: time.Hour,
		Backoff: func(int) time.Duration { return 0 },
		Handler: func(context.Context, outbox.Message) error {
			mu.Lock()
			defer mu.Unlock()
			calls = append(calls, time.Now())
			if len(calls) == 1 {
				return relay.RetryAfter(errors.New("429"), 300*time.Millisecond)
			}
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error)
	go func() { done <- r.Run(ctx) }()
	if _, err := store.Enqueue(t.Context(), outbox.Draft{Lane: "l", Target: "t", Payload: json.RawMessage(`1`)}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		n := len(calls)
		mu.Unlock()
		if n == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d calls; the retry never came (polling is hourly)", n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if gap := calls[1].Sub(calls[0]); gap < 300*time.Millisecond {
		t.Errorf("retried %s after a RetryAfter of 300ms", gap)
	}
	if d, ok := relay.RetryDelay(relay.RetryAfter(errors.New("x"), time.Second)); !ok || d != time.Second {
		t.Errorf("RetryDelay = %s %v", d, ok)
	}
	if relay.RetryAfter(nil, time.Second) != nil {
		t.Error("RetryAfter(nil) is not nil")
	}
}
