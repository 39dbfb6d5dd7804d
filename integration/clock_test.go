package integration

import (
	"testing"
	"time"

	"github.com/pgoutbox/pgoutbox/outbox"
)

// By default every timestamp is the database's: inside a transaction it is
// exactly that transaction's now(), whatever the Go process's clock says.
func TestDefaultClockIsTheDatabases(t *testing.T) {
	f := newFixture(t)
	tx, err := f.pool.Begin(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(f.ctx) }()
	var txNow time.Time
	if err := tx.QueryRow(f.ctx, "SELECT now()").Scan(&txNow); err != nil {
		t.Fatal(err)
	}
	s := f.store.WithTx(tx)
	m, err := s.Enqueue(f.ctx, draft(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	if !m.Message.CreatedAt.Equal(txNow) || !m.Message.AvailableAt.Equal(txNow) {
		t.Errorf("created %v, available %v; the transaction's now() is %v", m.Message.CreatedAt, m.Message.AvailableAt, txNow)
	}
	got, err := s.Claim(f.ctx, claimReq(1, 90*time.Second, "c"))
	if err != nil || len(got) != 1 {
		t.Fatal(got, err)
	}
	if !got[0].LeaseExpiresAt.Equal(txNow.Add(90 * time.Second)) {
		t.Errorf("lease expires %v, want the database's now() + 90s = %v", got[0].LeaseExpiresAt, txNow.Add(90*time.Second))
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
