package integration

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgoutbox/pgoutbox/outbox"
)

// recorder captures the statements a store sends, so the test can EXPLAIN the
// exact SQL sqlc generated without repeating it in Go.
type recorder struct {
	mu    sync.Mutex
	calls []pgx.TraceQueryStartData
}

func (r *recorder) TraceQueryStart(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, data)
	return ctx
}

func (r *recorder) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

func (r *recorder) last(prefix string) pgx.TraceQueryStartData {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := len(r.calls) - 1; i >= 0; i-- {
		if strings.HasPrefix(r.calls[i].SQL, prefix) {
			return r.calls[i]
		}
	}
	return pgx.TraceQueryStartData{}
}

// count is how many statements starting with prefix were sent.
func (r *recorder) count(prefix string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, c := range r.calls {
		if strings.HasPrefix(c.SQL, prefix) {
			n++
		}
	}
	return n
}

// The claim statement reads only the partial indexes: on a table with 100k
// delivered and 10k pending messages it must not scan delivered rows.
func TestClaimPlanUsesPartialIndexes(t *testing.T) {
	f := newFixture(t)
	pool, rec := tracedPool(t, f)
	store := outbox.NewPostgresStore(pool)

	// History: 100k delivered messages, then 10k pending ones and a few in
	// flight, all on the lane and target the claim asks for.
	tx, err := pool.Begin(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	s := store.WithTx(tx)
	for range 100 {
		if _, err := s.Enqueue(f.ctx, draft(`{"seed": true}`)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(f.ctx); err != nil {
		t.Fatal(err)
	}
	// Multiply the seed rows in SQL (test setup only): 100k delivered, 10k pending.
	for _, stmt := range []string{
		`INSERT INTO pgoutbox_message (lane, target, payload, status, available_at, attempt_count, max_attempts, created_at, updated_at)
		 SELECT lane, target, payload, 'delivered', available_at, 1, max_attempts, created_at, updated_at
		 FROM pgoutbox_message, generate_series(1, 1000)`,
		`DELETE FROM pgoutbox_message WHERE status = 'pending'`,
		`INSERT INTO pgoutbox_message (lane, target, payload, available_at, max_attempts, created_at, updated_at)
		 SELECT 'canonical', 'protocol_projector', '{"n": 1}', now() - interval '1 minute', 5, now(), now()
		 FROM generate_series(1, 10000)`,
		`ANALYZE pgoutbox_message`,
	} {
		if _, err := pool.Exec(f.ctx, stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	if _, err := store.Claim(f.ctx, claimReq(100, time.Minute, "explain")); err != nil {
		t.Fatal(err)
	}
	call := rec.last("-- name: MessageClaim")
	if call.SQL == "" {
		t.Fatal("claim statement not captured")
	}

	// EXPLAIN ANALYZE runs the statement; do it in a transaction and roll back.
	ptx, err := pool.Begin(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ptx.Rollback(f.ctx) }()
	var plan []map[string]any
	if err := ptx.QueryRow(f.ctx, "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) "+call.SQL, call.Args...).Scan(&plan); err != nil {
		t.Fatalf("explain: %v", err)
	}
	raw, _ := json.Marshal(plan)
	if strings.Contains(string(raw), `"Seq Scan"`) {
		t.Errorf("claim plan scans the table sequentially")
	}
	for _, idx := range []string{"pgoutbox_message_due_unkeyed_idx", "pgoutbox_message_lease_idx", "pgoutbox_message_key_idx"} {
		if !strings.Contains(string(raw), idx) {
			t.Errorf("claim plan does not use %s", idx)
		}
	}
	rows, err := ptx.Query(f.ctx, "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) "+call.SQL, call.Args...)
	if err != nil {
		t.Fatal(err)
	}
	var text []string
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			t.Fatal(err)
		}
		text = append(text, line)
	}
	t.Logf("claim plan, 100k delivered + 10k pending rows:\n%s", strings.Join(text, "\n"))
}

// burst adds 50k due messages on conn before any ANALYZE sees them (setup
// only), and opens a transaction on conn that the test's end rolls back,
// with a counter of this backend's sequential scans of the table in it (not
// yet reported to the statistics collector).
func burst(t *testing.T, f *fixture, conn *pgx.Conn) (pgx.Tx, func() int64) {
	t.Helper()
	if _, err := conn.Exec(f.ctx, `INSERT INTO pgoutbox_message (lane, target, payload, available_at, max_attempts, created_at, updated_at)
		SELECT 'canonical', 'protocol_projector', '{}', now() - interval '1 minute', 5, now(), now() FROM generate_series(1, 50000)`); err != nil {
		t.Fatal(err)
	}
	tx, err := conn.Begin(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tx.Rollback(context.Background()) })
	return tx, func() int64 {
		var n int64
		if err := tx.QueryRow(f.ctx, `SELECT seq_scan FROM pg_stat_xact_user_tables WHERE relname = 'pgoutbox_message'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
}

// tracedPool opens a pool on the fixture's database that records statements.
func tracedPool(t *testing.T, f *fixture) (*pgxpool.Pool, *recorder) {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(f.db.URL)
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	cfg.ConnConfig.Tracer = rec
	pool, err := pgxpool.NewWithConfig(f.ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool, rec
}

// nearlyEmpty opens a connection of its own (so that its prepared statements
// are the test's alone) and a store on it, enqueues n messages and analyzes
// the table: the statistics of a nearly empty outbox.
func nearlyEmpty(t *testing.T, f *fixture, n int) (*pgx.Conn, *outbox.PostgresStore) {
	t.Helper()
	conn, err := pgx.Connect(f.ctx, f.db.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	store := outbox.NewPostgresStore(conn, outbox.WithNotify(false))
	for range n {
		f.enqueue(store, draft(`{}`))
	}
	if _, err := conn.Exec(f.ctx, "ANALYZE pgoutbox_message"); err != nil {
		t.Fatal(err)
	}
	return conn, store
}

// A claim is planned for the table as it is when it runs, not as it was when
// its connection first prepared it: a plan cached while the table was nearly
// empty reads it sequentially, which is cheap for a few rows and ruinous
// once a burst has queued tens of thousands.
func TestClaimIsPlannedForTheTableAsItIsNow(t *testing.T) {
	f := newFixture(t)
	// A nearly empty outbox, analyzed as such, claimed from often enough
	// that a prepared statement would settle on a generic plan.
	conn, store := nearlyEmpty(t, f, 10)
	// A claim large enough to be planned afresh (small ones keep prepared
	// plans: planning would cost them more than it saves).
	req := claimReq(100, time.Minute, "c")
	for range 10 {
		ms := f.claim(store, req)
		if _, _, err := store.ClaimAndAck(f.ctx, req, receipts(ms)); err != nil {
			t.Fatal(err)
		}
		f.enqueue(store, draft(`{}`))
	}
	tx, seqScans := burst(t, f, conn)
	before := seqScans()
	if got := f.claim(store.WithTx(tx), req); len(got) != 100 {
		t.Fatalf("claimed %d", len(got))
	}
	if seqScans := seqScans() - before; seqScans != 0 {
		t.Errorf("the claim read the table sequentially %d times: it ran a plan made for the nearly empty table", seqScans)
	}
}

// Every statement that reads the table is planned for the table as it is
// now, not as it was when the connection first prepared it: with prepared
// statements, claims, locks, acks, nacks, lease extensions and a locked
// batch's outcomes ran a generic plan made on a nearly empty table, a
// sequential scan, on the grown one (the benchmark's plan-stability
// scenario took lock mode from 18,000 to 860 messages/s that way).
func TestEveryReadIsPlannedForTheTableAsItIsNow(t *testing.T) {
	f := newFixture(t)
	// A nearly empty outbox, analyzed as such; every statement runs often
	// enough on it that a prepared statement would settle on a generic plan.
	conn, store := nearlyEmpty(t, f, 8)
	small := claimReq(4, time.Minute, "c")
	for range 8 {
		ms := f.claim(store, small)
		if len(ms) < 2 {
			t.Fatalf("claimed %d", len(ms))
		}
		if _, err := store.AckMany(f.ctx, []outbox.Receipt{ms[0].Receipt()}); err != nil {
			t.Fatal(err)
		}
		if _, err := store.ExtendLeases(f.ctx, []outbox.Receipt{ms[1].Receipt()}, time.Minute); err != nil {
			t.Fatal(err)
		}
		if _, err := store.NackAfter(f.ctx, ms[1].ID, ms[1].ClaimToken, "x", 0); err != nil {
			t.Fatal(err)
		}
		for _, m := range ms[2:] {
			if _, err := store.Ack(f.ctx, m.ID, m.ClaimToken); err != nil {
				t.Fatal(err)
			}
		}
		b, err := store.LockBatch(f.ctx, lockReq(2))
		if err != nil {
			t.Fatal(err)
		}
		var outcomes []outbox.Outcome
		for _, m := range b.Messages() {
			outcomes = append(outcomes, outbox.Outcome{ID: m.ID, Err: errors.New("again")})
		}
		if _, err := b.Finish(f.ctx, outcomes); err != nil {
			t.Fatal(err)
		}
		for range 3 {
			f.enqueue(store, draft(`{}`))
		}
	}
	tx, seqScans := burst(t, f, conn)
	in := store.WithTx(tx)
	// Small claims and locks keep prepared plans, renewed while a backlog
	// lasts (every planRenewal, 5 s): the first full claim after that renews
	// them, and from then on they are planned for the grown table.
	time.Sleep(5100 * time.Millisecond)
	ms := f.claim(in, small)
	for name, run := range map[string]func() error{
		"claim":    func() error { _, err := in.Claim(f.ctx, small); return err },
		"ack many": func() error { _, err := in.AckMany(f.ctx, []outbox.Receipt{ms[0].Receipt()}); return err },
		"extend leases": func() error {
			_, err := in.ExtendLeases(f.ctx, []outbox.Receipt{ms[1].Receipt()}, time.Minute)
			return err
		},
		"nack": func() error { _, err := in.NackAfter(f.ctx, ms[1].ID, ms[1].ClaimToken, "x", 0); return err },
		"ack":  func() error { _, err := in.Ack(f.ctx, ms[2].ID, ms[2].ClaimToken); return err },
		"get":  func() error { _, err := in.Get(f.ctx, ms[3].ID); return err },
		// A locked batch inside tx is a savepoint, so its statements count
		// in tx's counters too.
		"lock and finish a batch": func() error {
			b, err := in.LockBatch(f.ctx, lockReq(2))
			if err != nil {
				return err
			}
			var outcomes []outbox.Outcome
			for _, m := range b.Messages() {
				outcomes = append(outcomes, outbox.Outcome{ID: m.ID})
			}
			_, err = b.Finish(f.ctx, outcomes)
			return err
		},
	} {
		before := seqScans()
		if err := run(); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if n := seqScans() - before; n != 0 {
			t.Errorf("%s read the table sequentially %d times: it ran a plan made for the nearly empty table", name, n)
		}
	}
}

// The walk from ordering key to ordering key reads one index entry per key it
// visits even while the table's statistics say no message holds a key, as
// they do when the table was analyzed before keys came into use: autovacuum
// analyzes it again only after a tenth of it has changed. With the key
// index's condition estimated from those statistics, each step of the walk
// was planned as a scan of every keyed message and a sort, so one claim read
// the keyed backlog once per key it visited.
func TestKeyWalkIgnoresStaleStatistics(t *testing.T) {
	f := newFixture(t)
	pool, rec := tracedPool(t, f)
	store := outbox.NewPostgresStore(pool)
	// 2,000 keys of 10 messages each; a claim takes 100 heads.
	const limit = 100
	for _, stmt := range []string{
		// Setup only: no autovacuum run may refresh the statistics mid-test.
		`ALTER TABLE pgoutbox_message SET (autovacuum_enabled = false)`,
		// Unkeyed traffic (scheduled for later, so no claim takes it),
		// analyzed as such.
		`INSERT INTO pgoutbox_message (lane, target, payload, available_at, max_attempts, created_at, updated_at)
		 SELECT 'canonical', 'protocol_projector', '{}', now() + interval '1 hour', 5, now(), now() FROM generate_series(1, 5000)`,
		`ANALYZE pgoutbox_message`,
		// Then keyed messages the statistics have not seen.
		`INSERT INTO pgoutbox_message (lane, target, payload, available_at, max_attempts, created_at, updated_at, ordering_key)
		 SELECT 'canonical', 'protocol_projector', '{}', now() - interval '1 minute', 5, now(), now(), 'key-' || (g % 2000)
		 FROM generate_series(1, 20000) g`,
	} {
		if _, err := pool.Exec(f.ctx, stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}

	// Claim mode and lock mode walk the keys alike.
	got := f.claim(store, claimReq(limit, time.Minute, "walk"))
	if len(got) != limit {
		t.Fatalf("claimed %d of %d heads", len(got), limit)
	}
	b, err := store.LockBatch(f.ctx, lockReq(limit))
	if err != nil {
		t.Fatal(err)
	}
	if n := len(b.Messages()); n != limit {
		t.Fatalf("locked %d of %d heads", n, limit)
	}
	if err := b.Release(f.ctx); err != nil {
		t.Fatal(err)
	}

	for _, name := range []string{"MessageClaim", "MessageLockDue"} {
		call := rec.last("-- name: " + name)
		if call.SQL == "" {
			t.Fatalf("%s not captured", name)
		}
		walks, text := explainWalks(t, f, pool, call)
		if len(walks) == 0 {
			t.Fatalf("%s: no walk in the plan\n%s", name, text)
		}
		for _, w := range walks {
			// An index walk reads a few blocks per key it visits (the
			// index path to the key's first entry); rereading the keyed
			// backlog for each key reads about 50 times that.
			if w.keys > 0 && w.blocks > 15*w.keys {
				t.Errorf("%s: a walk read %d blocks to visit %d keys: it is not an index walk\n%s", name, w.blocks, w.keys, text)
			} else if w.keys > 0 {
				t.Logf("%s: a walk read %d blocks to visit %d keys", name, w.blocks, w.keys)
			}
		}
	}
}

// walkCost is what one recursive walk of a plan visited and read.
type walkCost struct{ keys, blocks int64 }

// explainWalks runs a captured statement under EXPLAIN (ANALYZE, BUFFERS)
// in a transaction it rolls back, and returns for each recursive walk in
// the plan the rows (keys) it produced and the shared blocks it touched
// (hit or read), with the plan as text.
func explainWalks(t *testing.T, f *fixture, pool *pgxpool.Pool, call pgx.TraceQueryStartData) ([]walkCost, string) {
	t.Helper()
	tx, err := pool.Begin(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(context.Background()) }()
	type node struct {
		Type  string  `json:"Node Type"`
		Rows  float64 `json:"Actual Rows"`
		Loops float64 `json:"Actual Loops"`
		Hit   int64   `json:"Shared Hit Blocks"`
		Read  int64   `json:"Shared Read Blocks"`
		Plans []json.RawMessage
	}
	var plan []struct{ Plan json.RawMessage }
	// EXPLAIN ANALYZE runs the statement: the savepoint puts the table back
	// for the text plan.
	if _, err := tx.Exec(f.ctx, "SAVEPOINT explain"); err != nil {
		t.Fatal(err)
	}
	if err := tx.QueryRow(f.ctx, "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) "+call.SQL, call.Args...).Scan(&plan); err != nil {
		t.Fatalf("explain: %v", err)
	}
	if len(plan) != 1 {
		t.Fatalf("explain returned %d plans", len(plan))
	}
	var walks []walkCost
	var visit func(raw json.RawMessage)
	visit = func(raw json.RawMessage) {
		var n node
		if err := json.Unmarshal(raw, &n); err != nil {
			t.Fatalf("plan node: %v", err)
		}
		if n.Type == "Recursive Union" {
			walks = append(walks, walkCost{keys: int64(n.Rows * n.Loops), blocks: n.Hit + n.Read})
		}
		for _, c := range n.Plans {
			visit(c)
		}
	}
	visit(plan[0].Plan)
	if _, err := tx.Exec(f.ctx, "ROLLBACK TO SAVEPOINT explain"); err != nil {
		t.Fatal(err)
	}
	rows, err := tx.Query(f.ctx, "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING OFF) "+call.SQL, call.Args...)
	if err != nil {
		t.Fatal(err)
	}
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return walks, strings.Join(lines, "\n")
}
