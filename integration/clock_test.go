package integration

import (
	"testing"
	"time"

	"github.com/pgoutbox/pgoutbox/outbox"
)

// By default every timestamp is the database's, taken when the statement
// runs: inside a long transaction a lease starts when the claim runs, not
// when the transaction began (now() would be the transaction's start), and
// an enqueue's created_at is when it was enqueued.
func TestDefaultClockIsTheStatementsTime(t *testing.T) {
	f := newFixture(t)
	tx, err := f.pool.Begin(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(f.ctx) }()
	var txStart time.Time
	if err := tx.QueryRow(f.ctx, "SELECT now()").Scan(&txStart); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // other work in the transaction
	s := f.store.WithTx(tx)
	m, err := s.Enqueue(f.ctx, draft(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	if d := m.Message.CreatedAt.Sub(txStart); d < 300*time.Millisecond || !m.Message.AvailableAt.Equal(m.Message.CreatedAt) {
		t.Errorf("created %s after the transaction began (want the enqueue's own time, 300 ms later); available %v", d, m.Message.AvailableAt)
	}
	time.Sleep(300 * time.Millisecond)
	var before, after time.Time
	if err := tx.QueryRow(f.ctx, "SELECT clock_timestamp()").Scan(&before); err != nil {
		t.Fatal(err)
	}
	got, err := s.Claim(f.ctx, claimReq(1, 90*time.Second, "c"))
	if err != nil || len(got) != 1 {
		t.Fatal(got, err)
	}
	if err := tx.QueryRow(f.ctx, "SELECT clock_timestamp()").Scan(&after); err != nil {
		t.Fatal(err)
	}
	if start := got[0].LeaseExpiresAt.Add(-90 * time.Second); start.Before(before) || start.After(after) {
		t.Errorf("lease starts %v, want the claim's own time, between %v and %v", start, before, after)
	}
}

// The field report (against Que and lib/pq): a consumer claims inside a
// transaction that began 1.5 s earlier, with a 1 s lease, and commits. A
// lease measured from BEGIN had already expired, and a second consumer took
// the message at once; measured from the claim, it holds.
func TestLeaseTakenInALongTransactionHolds(t *testing.T) {
	f := newFixture(t)
	m := f.enqueue(f.store, draft(`{}`))
	tx, err := f.pool.Begin(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(f.ctx) }()
	if _, err := tx.Exec(f.ctx, "SELECT pg_sleep(1.5)"); err != nil {
		t.Fatal(err)
	}
	got, err := f.store.WithTx(tx).Claim(f.ctx, claimReq(1, time.Second, "first"))
	if err != nil || len(got) != 1 || got[0].ID != m.ID {
		t.Fatal(got, err)
	}
	if err := tx.Commit(f.ctx); err != nil {
		t.Fatal(err)
	}
	if stolen := f.claim(f.store, claimReq(1, time.Second, "second")); len(stolen) != 0 {
		t.Fatalf("a second consumer took a message whose lease was taken a moment ago: %+v", stolen[0])
	}
}

// Two relays whose hosts disagree about the time still agree on leases,
// because neither asks its host.
func TestSkewedHostsAgreeOnLeases(t *testing.T) {
	f := newFixture(t)
	m := f.enqueue(f.store, draft(`{}`))
	if got := f.claim(f.store, claimReq(1, time.Hour, "host-a")); len(got) != 1 {
		t.Fatal("claim")
	}
	// A relay whose own clock runs two hours fast, were it trusted, would
	// think host-a's lease long expired. The store does not ask it.
	fastHost := outbox.NewPostgresStore(f.pool)
	if got := f.claim(fastHost, claimReq(1, time.Hour, "host-b")); len(got) != 0 {
		t.Fatalf("host-b stole a live lease: %+v", got)
	}
	// Whereas a store told to trust a skewed clock would steal it: the
	// injected clock really is used.
	skewed := outbox.NewPostgresStore(f.pool, outbox.WithClock(func() time.Time { return time.Now().Add(2 * time.Hour) }))
	if got := f.claim(skewed, claimReq(1, time.Hour, "host-c")); len(got) != 1 || got[0].ID != m.ID {
		t.Fatalf("injected clock ignored: %+v", got)
	}
}

func TestInjectedClockStampsEveryWrite(t *testing.T) {
	c := newClock()
	f := newFixture(t, outbox.WithClock(c.Now))
	m := f.enqueue(f.store, draft(`{}`))
	if !m.CreatedAt.Equal(c.Now()) || !m.AvailableAt.Equal(c.Now()) || !m.UpdatedAt.Equal(c.Now()) {
		t.Fatalf("enqueue times %+v, clock %v", m, c.Now())
	}
	c.Advance(time.Minute)
	got := f.claim(f.store, claimReq(1, time.Second, "c"))
	if !got[0].UpdatedAt.Equal(c.Now()) || !got[0].LeaseExpiresAt.Equal(c.Now().Add(time.Second)) {
		t.Fatalf("claim times %+v, clock %v", got[0], c.Now())
	}
	c.Advance(time.Minute)
	if _, err := f.store.Nack(f.ctx, m.ID, got[0].ClaimToken, "r", time.Time{}); err != nil {
		t.Fatal(err)
	}
	if n := f.get(f.store, m.ID); !n.UpdatedAt.Equal(c.Now()) || !n.AvailableAt.Equal(c.Now()) {
		t.Fatalf("nack times %+v, clock %v", n, c.Now())
	}
}
