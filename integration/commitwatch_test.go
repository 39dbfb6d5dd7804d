package integration

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgoutbox/pgoutbox/internal/wakeup"
	"github.com/pgoutbox/pgoutbox/outbox"
	"github.com/pgoutbox/pgoutbox/relay"
)

// listen opens a session that LISTENs on the enqueues' channel.
func listen(t *testing.T, f *fixture) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(f.ctx, f.db.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	if _, err := conn.Exec(f.ctx, "LISTEN "+wakeup.Channel); err != nil {
		t.Fatal(err)
	}
	return conn
}

// nextNotification waits up to within for a notification on conn; nil when
// none came.
func nextNotification(t *testing.T, conn *pgx.Conn, within time.Duration) *pgconn.Notification {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), within)
	defer cancel()
	n, err := conn.WaitForNotification(ctx)
	if errors.Is(err, context.DeadlineExceeded) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// notifiedOnlyAfterCommit checks that listener hears nothing while tx,
// which enqueued, stays open for several rounds of the commit watcher, then
// commits tx and returns the notification that follows.
func notifiedOnlyAfterCommit(t *testing.T, listener *pgx.Conn, tx pgx.Tx) *pgconn.Notification {
	t.Helper()
	time.Sleep(50 * time.Millisecond)
	if n := nextNotification(t, listener, 10*time.Millisecond); n != nil {
		t.Fatalf("a notification before the commit: %+v", n)
	}
	if err := tx.Commit(t.Context()); err != nil {
		t.Fatal(err)
	}
	n := nextNotification(t, listener, prompt)
	if n == nil {
		t.Fatal("no notification after the commit")
	}
	return n
}

// Enqueues in a caller's transaction carry no NOTIFY of their own: a
// notifying transaction holds a database-wide lock from its commit until
// its WAL is flushed, which made concurrent producers commit one at a time.
// The store notifies from its own session once it sees the caller commit;
// a transaction that rolls back wakes nobody.
func TestCallersTransactionsAreNotifiedAfterTheyCommit(t *testing.T) {
	f := newFixture(t)
	listener := listen(t, f)
	producer := outbox.NewPostgresStore(pgtestPool(t, f))

	tx, err := f.pool.Begin(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	var producerPID uint32
	if err := tx.QueryRow(f.ctx, "SELECT pg_backend_pid()").Scan(&producerPID); err != nil {
		t.Fatal(err)
	}
	f.enqueue(producer.WithTx(tx), draft(`1`))
	n := notifiedOnlyAfterCommit(t, listener, tx)
	if key, _, ok := wakeup.Parse(n.Payload); !ok || key != wakeup.Key("", outbox.LaneCanonical, outbox.TargetProtocolProjector) {
		t.Errorf("payload %q", n.Payload)
	}
	if n.PID == producerPID {
		t.Errorf("the notification came from the caller's own transaction (pid %d)", n.PID)
	}

	// A rolled-back enqueue, in a batch this time, wakes nobody.
	time.Sleep(2 * outbox.DefaultNotifyInterval) // past the limiter's cover of the last one
	tx, err = f.pool.Begin(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := producer.WithTx(tx).EnqueueMany(f.ctx, []outbox.Draft{draft(`2`), draft(`3`)}); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(f.ctx); err != nil {
		t.Fatal(err)
	}
	if n := nextNotification(t, listener, 300*time.Millisecond); n != nil {
		t.Errorf("a notification for a rolled-back enqueue: %+v", n)
	}
}

// Many producers committing at once, each in its own transaction, are all
// handled promptly by a relay that polls once a minute: every commit is
// seen, whichever notification covers it.
func TestConcurrentCallersTransactionsAreAllHandled(t *testing.T) {
	f := newFixture(t)
	handled := make(chan string, 100)
	idleRelay(t, f, relay.ModeClaim, func(_ context.Context, m outbox.Message) error { handled <- m.ID; return nil })
	pool := pgtestPool(t, f)
	producer := outbox.NewPostgresStore(pool)
	const producers = 20
	var wg sync.WaitGroup
	errs := make(chan error, producers)
	for i := range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- pgx.BeginFunc(f.ctx, pool, func(tx pgx.Tx) error {
				if i%2 == 0 {
					_, err := producer.WithTx(tx).Enqueue(f.ctx, draft(`1`))
					return err
				}
				_, err := producer.WithTx(tx).EnqueueMany(f.ctx, []outbox.Draft{draft(`1`)})
				return err
			})
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	seen := map[string]bool{}
	deadline := time.After(prompt)
	for len(seen) < producers {
		select {
		case id := <-handled:
			seen[id] = true
		case <-deadline:
			t.Fatalf("%d of %d messages handled (the relay polls once a minute)", len(seen), producers)
		}
	}
}

// The limiter counts notifications in real time, as relays follow up in real
// time: a store whose injected clock stands still still notifies for a
// caller's transaction that commits long after the last notification.
func TestCallersTransactionNotifiedWithAFrozenClock(t *testing.T) {
	f := newFixture(t)
	listener := listen(t, f)
	clk := newClock()
	producer := outbox.NewPostgresStore(pgtestPool(t, f), outbox.WithClock(clk.Now))
	f.enqueue(producer, draft(`0`))
	if n := nextNotification(t, listener, prompt); n == nil {
		t.Fatal("no notification for the first enqueue")
	}
	time.Sleep(200 * time.Millisecond) // beyond any follow-up; the injected clock does not move
	tx, err := f.pool.Begin(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	f.enqueue(producer.WithTx(tx), draft(`1`))
	if err := tx.Commit(f.ctx); err != nil {
		t.Fatal(err)
	}
	if n := nextNotification(t, listener, prompt); n == nil {
		t.Fatal("a caller's committed transaction was never notified")
	}
}

// A keyed batch in a caller's transaction runs in a savepoint; the watcher
// still waits for the top-level transaction.
func TestCallersKeyedBatchNotifiedAfterCommit(t *testing.T) {
	f := newFixture(t)
	listener := listen(t, f)
	producer := outbox.NewPostgresStore(pgtestPool(t, f))
	tx, err := f.pool.Begin(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	d := draft(`1`)
	d.DedupeKey = "k"
	if _, err := producer.WithTx(tx).EnqueueMany(f.ctx, []outbox.Draft{d, draft(`2`)}); err != nil {
		t.Fatal(err)
	}
	notifiedOnlyAfterCommit(t, listener, tx)
}

// A transaction that stays open costs the watcher at most about ten reads a
// second once it is a second old, and one committing for many scopes costs
// one notifying statement, not one per scope.
func TestCommitWatcherCosts(t *testing.T) {
	f := newFixture(t)
	pool, rec := tracedPool(t, f) // the watcher's session; the caller's transaction runs on f.pool
	reads := func() int { return rec.count("-- name: XactStatuses ") }
	notifies := func() int { return rec.count("-- name: NotifySend") }
	producer := outbox.NewPostgresStore(pool)
	tx, err := f.pool.Begin(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	const scopes = 50
	for i := range scopes {
		s, err := producer.Scoped("tenant-" + itoa(i))
		if err != nil {
			t.Fatal(err)
		}
		f.enqueue(s.WithTx(tx), draft(`1`))
	}
	time.Sleep(time.Second)
	before := reads()
	time.Sleep(time.Second)
	if reads := reads() - before; reads > 15 {
		t.Errorf("%d reads in the second second of an open transaction, want at most 15", reads)
	}
	if err := tx.Commit(f.ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, prompt, "the notification of the commit", func() bool { return notifies() > 0 })
	time.Sleep(200 * time.Millisecond)
	if n := notifies(); n != 1 {
		t.Errorf("%d notifying statements for one commit in %d scopes, want 1", n, scopes)
	}
}
