package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgoutbox/pgoutbox/examples/orders"
	"github.com/pgoutbox/pgoutbox/outbox"
)

// In a REPEATABLE READ transaction, a dedupe key taken by a transaction that
// committed after the snapshot cannot be deduplicated in place: the caller
// gets a serialization failure (SQLSTATE 40001, to retry like any other),
// with an error that says why.
func TestDedupeInRepeatableReadIsASerializationFailure(t *testing.T) {
	f := newFixture(t)
	d := draft(`{}`)
	d.DedupeKey = "k"
	tx, err := f.pool.BeginTx(f.ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(f.ctx) }()
	if _, err := tx.Exec(f.ctx, "SELECT 1"); err != nil { // takes the snapshot
		t.Fatal(err)
	}
	f.enqueue(f.store, d) // commits after the snapshot
	_, err = f.store.WithTx(tx).Enqueue(f.ctx, d)
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != pgerrcode.SerializationFailure || !strings.Contains(err.Error(), "REPEATABLE READ") {
		t.Fatalf("got %v, want a serialization failure that explains itself", err)
	}
	// A key held before the snapshot deduplicates as in READ COMMITTED.
	tx2, err := f.pool.BeginTx(f.ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx2.Rollback(f.ctx) }()
	if r, err := f.store.WithTx(tx2).Enqueue(f.ctx, d); err != nil || !r.Deduplicated {
		t.Fatalf("a key committed before the snapshot: %+v %v", r, err)
	}
}

// A payload that jsonb cannot hold, though under MaxPayloadBytes, is refused
// by validation: the caller's transaction stays usable.
func TestPayloadTooLargeForJSONBLeavesTheTransactionUsable(t *testing.T) {
	f := newFixture(t)
	f.ordersSchema()
	inner := "[" + strings.Repeat("0,", 4999) + "0]"
	huge := json.RawMessage("[" + strings.Repeat(inner+",", 4999) + inner + "]")
	tx, err := f.pool.Begin(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(f.ctx) }()
	d := draft(`{}`)
	d.Payload = huge
	_, err = f.store.WithTx(tx).Enqueue(f.ctx, d)
	var verr *outbox.ValidationError
	if !errors.As(err, &verr) || verr.Field != "payload" {
		t.Fatalf("got %v, want a validation error on the payload", err)
	}
	if _, err := orders.New(tx).OrderCreate(f.ctx, orders.OrderCreateParams{Customer: "dan", TotalCents: 1}); err != nil {
		t.Fatalf("the caller's transaction is unusable after the refusal: %v", err)
	}
	if err := tx.Commit(f.ctx); err != nil {
		t.Fatal(err)
	}
}

// Two batches with the same 300 dedupe keys in opposite orders, run at
// once, never deadlock (they did in 7-9 of 10 rounds when each batch
// inserted in its own order) and converge on one row per key.
func TestConcurrentBatchesWithCrossedKeysDoNotDeadlock(t *testing.T) {
	f := newFixture(t)
	pool := pgtestPool(t, f)
	for round := range 10 {
		forward := make([]outbox.Draft, 300)
		for i := range forward {
			forward[i] = draft(`{}`)
			forward[i].DedupeKey = fmt.Sprintf("r%d-k%03d", round, i)
		}
		backward := make([]outbox.Draft, len(forward))
		for i := range forward {
			backward[i] = forward[len(forward)-1-i]
		}
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for i, batch := range [][]outbox.Draft{forward, backward} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, errs[i] = outbox.NewPostgresStore(pool).EnqueueMany(context.Background(), batch)
			}()
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
		}
		if n := f.count("dedupe_key LIKE $1", fmt.Sprintf("r%d-%%", round)); n != 300 {
			t.Fatalf("round %d: %d rows for 300 keys", round, n)
		}
	}
}
