package integration

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgoutbox/pgoutbox/internal/pgtest"
	"github.com/pgoutbox/pgoutbox/outbox"
)

// fixture is one test's database and a store on it.
type fixture struct {
	t     *testing.T
	ctx   context.Context
	db    *pgtest.DB
	pool  *pgxpool.Pool
	store *outbox.PostgresStore
}

func newFixture(t *testing.T, opts ...outbox.Option) *fixture {
	t.Helper()
	t.Parallel()
	d := pgtest.NewDB(t)
	return &fixture{t: t, ctx: t.Context(), db: d, pool: d.Pool, store: outbox.NewPostgresStore(d.Pool, opts...)}
}

// clock is a settable clock for WithClock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock {
	return &clock{now: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func draft(payload string) outbox.Draft {
	return outbox.Draft{Lane: outbox.LaneCanonical, Target: outbox.TargetProtocolProjector, Payload: json.RawMessage(payload)}
}

func claimReq(limit int, lease time.Duration, consumer string) outbox.ClaimRequest {
	return outbox.ClaimRequest{Lane: outbox.LaneCanonical, Target: outbox.TargetProtocolProjector, Limit: limit, Lease: lease, ConsumerID: consumer}
}

func (f *fixture) enqueue(s *outbox.PostgresStore, d outbox.Draft) outbox.Message {
	f.t.Helper()
	res, err := s.Enqueue(f.ctx, d)
	if err != nil {
		f.t.Fatalf("enqueue: %v", err)
	}
	return res.Message
}

func (f *fixture) claim(s *outbox.PostgresStore, r outbox.ClaimRequest) []outbox.Message {
	f.t.Helper()
	msgs, err := s.Claim(f.ctx, r)
	if err != nil {
		f.t.Fatalf("claim: %v", err)
	}
	return msgs
}

func (f *fixture) get(s *outbox.PostgresStore, id string) outbox.Message {
	f.t.Helper()
	m, err := s.Get(f.ctx, id)
	if err != nil {
		f.t.Fatalf("get %s: %v", id, err)
	}
	return m
}

// snapshot is the whole table as text, to prove a failed call changed nothing.
func (f *fixture) snapshot() string {
	f.t.Helper()
	var s *string
	err := f.pool.QueryRow(f.ctx, `SELECT string_agg(to_jsonb(m)::text, E'\n' ORDER BY id) FROM pgoutbox_message m`).Scan(&s)
	if err != nil {
		f.t.Fatalf("snapshot: %v", err)
	}
	if s == nil {
		return ""
	}
	return *s
}

func (f *fixture) count(where string, args ...any) int {
	f.t.Helper()
	var n int
	if err := f.pool.QueryRow(f.ctx, "SELECT count(*) FROM pgoutbox_message WHERE "+where, args...).Scan(&n); err != nil {
		f.t.Fatalf("count %s: %v", where, err)
	}
	return n
}

// dbNow is the database's clock.
func (f *fixture) dbNow() time.Time {
	f.t.Helper()
	var now time.Time
	if err := f.pool.QueryRow(f.ctx, "SELECT now()").Scan(&now); err != nil {
		f.t.Fatal(err)
	}
	return now
}

func sleepBriefly() { time.Sleep(10 * time.Millisecond) }

func itoa(i int) string { return strconv.Itoa(i) }

// newSequentialFixture is newFixture for tests that must not run alongside
// others (goroutine leak checks).
func newSequentialFixture(t *testing.T) *fixture {
	t.Helper()
	d := pgtest.NewDB(t)
	return &fixture{t: t, ctx: t.Context(), db: d, pool: d.Pool, store: outbox.NewPostgresStore(d.Pool)}
}

// pgtestPool opens a second pool on the fixture's database.
func pgtestPool(t *testing.T, f *fixture) *pgxpool.Pool {
	t.Helper()
	return pgtest.Pool(t, f.db.URL)
}

func errorsIs(err, target error) bool { return errors.Is(err, target) }

// receipts are the claims on msgs, in order.
func receipts(msgs []outbox.Message) []outbox.Receipt {
	r := make([]outbox.Receipt, len(msgs))
	for i, m := range msgs {
		r[i] = m.Receipt()
	}
	return r
}
