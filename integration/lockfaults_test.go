package integration

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pgoutbox/pgoutbox/outbox"
	"github.com/pgoutbox/pgoutbox/relay"
)

// Finish refuses an outcome for a message that is not in the batch (here
// one delivered earlier), writes nothing and leaves the batch open.
func TestLockBatchFinishRefusesIDsOutsideTheBatch(t *testing.T) {
	f := newFixture(t)
	done := f.enqueue(f.store, draft(`"done"`))
	got := f.claim(f.store, claimReq(1, time.Minute, "c"))
	if ok, err := f.store.Ack(f.ctx, got[0].ID, got[0].ClaimToken); err != nil || !ok {
		t.Fatal(ok, err)
	}
	m := f.enqueue(f.store, draft(`"in batch"`))
	b, err := f.store.LockBatch(f.ctx, lockReq(10))
	if err != nil || len(b.Messages()) != 1 {
		t.Fatal(b, err)
	}
	t.Cleanup(func() { _ = b.Release(context.Background()) })
	for name, outcomes := range map[string][]outbox.Outcome{
		"outside":  {{ID: done.ID, Err: errors.New("x")}},
		"unknown":  {{ID: "999999"}},
		"repeated": {{ID: m.ID}, {ID: m.ID, Err: errors.New("x")}},
	} {
		_, err := b.Finish(f.ctx, outcomes)
		var verr *outbox.ValidationError
		if !errors.As(err, &verr) {
			t.Errorf("%s: %v, want a validation error", name, err)
		}
	}
	if back := f.get(f.store, done.ID); back.Status != outbox.StatusDelivered || back.AttemptCount != 1 {
		t.Fatalf("a message outside the batch was rewritten: %+v", back)
	}
	// The batch is still open and finishes normally.
	if st, err := b.Finish(f.ctx, []outbox.Outcome{{ID: m.ID}}); err != nil || st[0] != outbox.StatusDelivered {
		t.Fatalf("finish after refusals: %v %v", st, err)
	}
}

// When Run's context ends mid-batch, a lock-mode relay starts no new
// handler: with concurrency 1, a batch of 10 and handlers of 200 ms, at most
// the handler already running finishes, and Run returns within the drain
// timeout (50 ms) plus that handler.
func TestLockModeDrainStartsNoNewHandlers(t *testing.T) {
	f := newFixture(t)
	f.fill(f.store, 10, draft(`{}`))
	var started atomic.Int32
	first := make(chan struct{}, 1)
	cfg := relayConfig(func(ctx context.Context, _ outbox.Message) error {
		started.Add(1)
		select {
		case first <- struct{}{}:
		default:
		}
		select {
		case <-time.After(200 * time.Millisecond):
		case <-ctx.Done():
		}
		return nil
	})
	cfg.Mode = relay.ModeLock
	cfg.Concurrency, cfg.BatchSize = 1, 10
	cfg.DrainTimeout = 50 * time.Millisecond
	stop := runRelay(t, newRelay(t, f.store, cfg))
	<-first
	stopped := time.Now()
	stop()
	took := time.Since(stopped)
	if n := started.Load(); n > 1 {
		t.Errorf("%d handlers started; after the cancel none should start", n)
	}
	if took > time.Second {
		t.Errorf("Run returned %s after the cancel", took)
	}
	if n := f.count("status = 'pending' AND attempt_count = 0"); n < 9 {
		t.Errorf("%d untouched pending messages, want at least 9", n)
	}
}

// A lock-mode relay whose batch transaction is gone (its backend terminated
// while handlers run: a network blip, a failover, a DBA) cancels those
// handlers at its next probe, within a heartbeat interval, because another
// relay may already be delivering the same messages. The messages are
// pending again, and a second relay delivers them.
func TestLockModeCancelsHandlersWhenTheBatchIsLost(t *testing.T) {
	f := newFixture(t)
	m := f.enqueue(f.store, draft(`{}`))
	pool := pgtestPool(t, f)
	cancelled := make(chan time.Time, 1)
	running := make(chan struct{}, 1)
	cfg := relayConfig(func(ctx context.Context, _ outbox.Message) error {
		running <- struct{}{}
		<-ctx.Done()
		cancelled <- time.Now()
		return ctx.Err()
	})
	cfg.Mode = relay.ModeLock
	cfg.Lease = 30 * time.Second
	cfg.HeartbeatInterval = 200 * time.Millisecond
	runRelay(t, newRelay(t, outbox.NewPostgresStore(pool), cfg))
	<-running
	var killed int
	if err := f.pool.QueryRow(f.ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE datname = current_database() AND state = 'idle in transaction'`).Scan(&killed); err != nil || killed != 1 {
		t.Fatalf("terminated %d backends: %v", killed, err)
	}
	terminated := time.Now()
	select {
	case at := <-cancelled:
		if d := at.Sub(terminated); d > 2*time.Second {
			t.Errorf("handler cancelled %s after its transaction was lost", d)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the handler of a lost batch was never cancelled")
	}
	if back := f.get(f.store, m.ID); back.Status != outbox.StatusPending || back.AttemptCount != 0 {
		t.Fatalf("after the lost batch: %+v", back)
	}
}

// Lock mode under idle_in_transaction_session_timeout: with the server
// ending idle transactions after 300 ms and handlers of 600 ms that succeed,
// every message is still delivered (the batch sets its own timeout, one
// lease), and each attempt counts.
func TestLockModeOverridesAShortIdleTimeout(t *testing.T) {
	f := newFixture(t)
	if _, err := f.pool.Exec(f.ctx, `SELECT set_config('idle_in_transaction_session_timeout', '300ms', false)`); err != nil {
		t.Fatal(err)
	}
	// The database's default, as a DBA would set it, for every new session.
	if _, err := f.pool.Exec(f.ctx, `DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET idle_in_transaction_session_timeout = 300', current_database()); END $$`); err != nil {
		t.Fatal(err)
	}
	f.fill(f.store, 6, draft(`{}`))
	pool := pgtestPool(t, f) // new sessions, with the database's setting
	var calls atomic.Int32
	cfg := relayConfig(func(ctx context.Context, _ outbox.Message) error {
		calls.Add(1)
		select {
		case <-time.After(600 * time.Millisecond):
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	cfg.Mode = relay.ModeLock
	cfg.Concurrency, cfg.BatchSize = 3, 3
	cfg.Lease = 5 * time.Second
	runRelay(t, newRelay(t, outbox.NewPostgresStore(pool), cfg))
	eventually(t, 20*time.Second, "all six delivered", func() bool { return f.count("status = 'delivered'") == 6 })
	if n := calls.Load(); n != 6 {
		t.Errorf("%d handler calls for 6 messages", n)
	}
	if n := f.count("attempt_count = 1"); n != 6 {
		t.Errorf("%d messages with one attempt counted, want 6", n)
	}
}

// A lock-mode handler that ignores its context does not keep the batch's
// transaction (and the xmin horizon) open past the lease: the relay writes
// the outcomes it knows and commits when the lease runs out.
func TestLockModeEndsTheBatchAtItsLease(t *testing.T) {
	f := newFixture(t)
	f.fill(f.store, 2, draft(`{}`))
	release := make(chan struct{})
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { close(release) }) })
	var calls atomic.Int32
	cfg := relayConfig(func(context.Context, outbox.Message) error {
		if calls.Add(1) == 1 {
			return nil // fast
		}
		<-release // ignores its context
		return nil
	})
	cfg.Mode = relay.ModeLock
	cfg.Concurrency, cfg.BatchSize = 2, 2
	cfg.Lease = time.Second
	runRelay(t, newRelay(t, f.store, cfg))
	eventually(t, 10*time.Second, "the fast message delivered", func() bool { return f.count("status = 'delivered'") == 1 })
	var open int
	if err := f.pool.QueryRow(f.ctx, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()
		AND state LIKE 'idle in transaction%' AND xact_start < now() - interval '2 seconds'`).Scan(&open); err != nil {
		t.Fatal(err)
	}
	if open != 0 {
		t.Errorf("%d transactions open for more than twice the lease", open)
	}
	once.Do(func() { close(release) })
}
