package integration

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pgoutbox/pgoutbox/outbox"
	"github.com/pgoutbox/pgoutbox/relay"
)

func lockReq(limit int) outbox.LockRequest {
	return outbox.LockRequest{Lane: outbox.LaneCanonical, Target: outbox.TargetProtocolProjector, Limit: limit}
}

// Two locked batches never share a message, and a released batch leaves its
// messages exactly as they were.
func TestLockBatchesAreDisjointAndReleaseRestores(t *testing.T) {
	f := newFixture(t)
	for i := range 10 {
		f.enqueue(f.store, draft(itoa(i)))
	}
	before := f.snapshot()
	a, err := f.store.LockBatch(f.ctx, lockReq(6))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Release(context.Background()) }) // a failing test must not leave locks behind
	b, err := f.store.LockBatch(f.ctx, lockReq(6))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Release(context.Background()) })
	seen := map[string]bool{}
	for _, m := range append(a.Messages(), b.Messages()...) {
		if seen[m.ID] {
			t.Fatalf("message %s in both batches", m.ID)
		}
		seen[m.ID] = true
	}
	if len(a.Messages()) != 6 || len(b.Messages()) != 4 {
		t.Fatalf("batches of %d and %d, want 6 and 4", len(a.Messages()), len(b.Messages()))
	}
	if err := a.Release(f.ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.Release(f.ctx); err != nil {
		t.Fatal(err)
	}
	if f.snapshot() != before {
		t.Fatal("a released batch changed the table")
	}
	if _, err := a.Finish(f.ctx, nil); !errors.Is(err, outbox.ErrBatchClosed) {
		t.Fatalf("finish after release: %v", err)
	}
}

func TestLockBatchFinishWritesEveryOutcome(t *testing.T) {
	c := newClock()
	f := newFixture(t, outbox.WithClock(c.Now))
	ok := f.enqueue(f.store, draft(`1`))
	retry := f.enqueue(f.store, draft(`2`))
	perm := f.enqueue(f.store, draft(`3`))
	last := draft(`4`)
	last.MaxAttempts = 1
	lastM := f.enqueue(f.store, last)
	untouched := f.enqueue(f.store, draft(`5`))
	batch, err := f.store.LockBatch(f.ctx, lockReq(10))
	if err != nil {
		t.Fatalf("lock: %v", err)
	}
	t.Cleanup(func() { _ = batch.Release(context.Background()) })
	if len(batch.Messages()) != 5 {
		t.Fatalf("locked %d, want 5", len(batch.Messages()))
	}
	statuses, err := batch.Finish(f.ctx, []outbox.Outcome{
		{ID: ok.ID},
		{ID: retry.ID, Err: errors.New("503"), RetryAfter: time.Minute},
		{ID: perm.ID, Err: errors.New("400"), Permanent: true},
		{ID: lastM.ID, Err: errors.New("timeout")},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []outbox.Status{outbox.StatusDelivered, outbox.StatusPending, outbox.StatusDeadLetter, outbox.StatusDeadLetter}
	for i := range want {
		if statuses[i] != want[i] {
			t.Errorf("outcome %d: %s, want %s", i, statuses[i], want[i])
		}
	}
	if m := f.get(f.store, retry.ID); m.AttemptCount != 1 || !m.AvailableAt.Equal(c.Now().Add(time.Minute)) || m.LastError != "503" {
		t.Errorf("retried %+v", m)
	}
	if m := f.get(f.store, ok.ID); m.AttemptCount != 1 || m.Status != outbox.StatusDelivered {
		t.Errorf("delivered %+v", m)
	}
	if m := f.get(f.store, untouched.ID); m.AttemptCount != 0 || m.Status != outbox.StatusPending {
		t.Errorf("message without an outcome %+v", m)
	}
}

// Relays in lock mode deliver a backlog exactly once between them.
func TestLockModeRelaysDeliverEveryMessageOnce(t *testing.T) {
	f := newFixture(t)
	const total = 1200
	f.fill(f.store, total, draft(`{}`))
	l := newLedger()
	for i := range 3 {
		cfg := relayConfig(func(_ context.Context, m outbox.Message) error { l.record(m.ID); return nil })
		cfg.Mode = relay.ModeLock
		cfg.Concurrency = 32
		cfg.ConsumerID = "lock-" + itoa(i)
		runRelay(t, newRelay(t, f.store, cfg))
	}
	eventually(t, time.Minute, "all delivered", func() bool { return f.count("status = 'delivered'") == total })
	if l.total() != total {
		t.Fatalf("%d handler calls for %d messages", l.total(), total)
	}
	if n := f.count("attempt_count = 1"); n != total {
		t.Fatalf("%d messages with one attempt, want %d", n, total)
	}
}

// Failures in lock mode retry with backoff and dead-letter when permanent or
// out of attempts, as in claim mode.
func TestLockModeRetriesAndDeadLetters(t *testing.T) {
	f := newFixture(t)
	flaky := f.enqueue(f.store, draft(`"flaky"`))
	bad := f.enqueue(f.store, draft(`"bad"`))
	var calls sync.Map
	cfg := relayConfig(func(_ context.Context, m outbox.Message) error {
		n, _ := calls.LoadOrStore(m.ID, new(atomic.Int32))
		attempt := n.(*atomic.Int32).Add(1)
		if int(attempt) != m.AttemptCount {
			return relay.Permanent(errors.New("attempt count mismatch"))
		}
		switch string(m.Payload) {
		case `"flaky"`:
			if attempt == 1 {
				return errors.New("try again")
			}
		case `"bad"`:
			return relay.Permanent(errors.New("malformed"))
		}
		return nil
	})
	cfg.Mode = relay.ModeLock
	cfg.Backoff = func(int) time.Duration { return 0 }
	runRelay(t, newRelay(t, f.store, cfg))
	eventually(t, 10*time.Second, "settled", func() bool {
		return f.get(f.store, flaky.ID).Status == outbox.StatusDelivered && f.get(f.store, bad.ID).Status == outbox.StatusDeadLetter
	})
	if m := f.get(f.store, flaky.ID); m.AttemptCount != 2 {
		t.Errorf("flaky: %+v", m)
	}
	if m := f.get(f.store, bad.ID); m.AttemptCount != 1 || !strings.Contains(m.LastError, "malformed") {
		t.Errorf("bad: %+v", m)
	}
}

// The relaxed guarantee, pinned: a lock-mode relay that dies mid-batch
// leaves its messages pending with no attempt counted, and another relay
// delivers them. Nothing is lost.
func TestLockModeCrashCountsNoAttemptAndLosesNothing(t *testing.T) {
	f := newFixture(t)
	f.fill(f.store, 20, draft(`{}`))
	started := make(chan struct{}, 20)
	stuck := relayConfig(func(ctx context.Context, _ outbox.Message) error {
		started <- struct{}{}
		<-ctx.Done()
		return ctx.Err()
	})
	stuck.Mode = relay.ModeLock
	stuck.Concurrency, stuck.BatchSize = 10, 10
	stuck.DrainTimeout = time.Millisecond
	stop := runRelay(t, newRelay(t, f.store, stuck))
	for range 10 {
		<-started
	}
	stop()
	if n := f.count("status = 'pending' AND attempt_count = 0"); n != 20 {
		t.Fatalf("%d pending with no attempt after the crash, want all 20", n)
	}
	cfg := relayConfig(func(context.Context, outbox.Message) error { return nil })
	cfg.Mode = relay.ModeLock
	runRelay(t, newRelay(t, f.store, cfg))
	eventually(t, 10*time.Second, "delivered by the next relay", func() bool { return f.count("status = 'delivered'") == 20 })
}
