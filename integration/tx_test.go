package integration

import (
	"encoding/json"
	"errors"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/pgoutbox/pgoutbox/examples/orders"
	"github.com/pgoutbox/pgoutbox/outbox"
)

func (f *fixture) ordersSchema() {
	f.t.Helper()
	if err := orders.CreateSchema(f.ctx, f.pool); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) orderCount() int64 {
	f.t.Helper()
	n, err := orders.New(f.pool).OrderCount(f.ctx)
	if err != nil {
		f.t.Fatal(err)
	}
	return n
}

// placeOrder writes an order with the caller's own sqlc Querier and its
// outbox message through the store, in the caller's transaction.
func (f *fixture) placeOrder(tx pgx.Tx, customer string) (orders.Order, outbox.EnqueueResult, error) {
	order, err := orders.New(tx).OrderCreate(f.ctx, orders.OrderCreateParams{Customer: customer, TotalCents: 1999})
	if err != nil {
		return order, outbox.EnqueueResult{}, err
	}
	payload, _ := json.Marshal(map[string]any{"order_id": order.ID, "customer": customer})
	d := draft(string(payload))
	d.DedupeKey = "order-placed-" + customer
	res, err := f.store.WithTx(tx).Enqueue(f.ctx, d)
	return order, res, err
}

func TestEnqueueCommitsWithCallersTransaction(t *testing.T) {
	f := newFixture(t)
	f.ordersSchema()
	tx, err := f.pool.Begin(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	_, res, err := f.placeOrder(tx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	// Not visible outside the transaction before it commits.
	if n := f.count("true"); n != 0 || f.orderCount() != 0 {
		t.Fatalf("uncommitted rows visible: %d messages", n)
	}
	// The store bound to tx sees its own uncommitted message.
	if _, err := f.store.WithTx(tx).Get(f.ctx, res.Message.ID); err != nil {
		t.Fatalf("get inside tx: %v", err)
	}
	if err := tx.Commit(f.ctx); err != nil {
		t.Fatal(err)
	}
	if n := f.count("true"); n != 1 || f.orderCount() != 1 {
		t.Fatalf("after commit: %d messages, %d orders", n, f.orderCount())
	}
}

func TestEnqueueRollsBackWithCallersTransaction(t *testing.T) {
	f := newFixture(t)
	f.ordersSchema()
	tx, err := f.pool.Begin(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.placeOrder(tx, "bob"); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(f.ctx); err != nil {
		t.Fatal(err)
	}
	if n := f.count("true"); n != 0 || f.orderCount() != 0 {
		t.Fatalf("after rollback: %d messages, %d orders", n, f.orderCount())
	}
}

// A duplicate inside the caller's transaction is an answer, not an error that
// poisons the transaction: the caller's later writes and the commit succeed.
func TestDuplicateInsideCallersTransactionDoesNotAbortIt(t *testing.T) {
	f := newFixture(t)
	f.ordersSchema()
	d := draft(`{"n": 1}`)
	d.DedupeKey = "dup"
	first := f.enqueue(f.store, d)

	tx, err := f.pool.Begin(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(f.ctx) }()
	res, err := f.store.WithTx(tx).Enqueue(f.ctx, d)
	if err != nil || !res.Deduplicated || res.Message.ID != first.ID {
		t.Fatalf("duplicate in tx: %+v %v", res, err)
	}
	conflicting := d
	conflicting.Payload = json.RawMessage(`{"n": 2}`)
	if _, err := f.store.WithTx(tx).Enqueue(f.ctx, conflicting); !errors.Is(err, outbox.ErrConflict) {
		t.Fatalf("conflict in tx: %v", err)
	}
	if _, err := orders.New(tx).OrderCreate(f.ctx, orders.OrderCreateParams{Customer: "carol", TotalCents: 5}); err != nil {
		t.Fatalf("write after duplicate: %v", err)
	}
	if err := tx.Commit(f.ctx); err != nil {
		t.Fatalf("commit after duplicate: %v", err)
	}
	if f.orderCount() != 1 || f.count("true") != 1 {
		t.Errorf("after commit: %d orders, %d messages", f.orderCount(), f.count("true"))
	}
}

// Sixteen producers racing on one key converge on one row, and every one of
// them gets that row back without an error.
func TestConcurrentDuplicatesConvergeOnOneRow(t *testing.T) {
	f := newFixture(t)
	d := draft(`{"event": "paid"}`)
	d.DedupeKey = "payment-7"
	const producers = 16
	var (
		wg      sync.WaitGroup
		start   = make(chan struct{})
		results = make([]outbox.EnqueueResult, producers)
		errs    = make([]error, producers)
	)
	for i := range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			results[i], errs[i] = f.store.Enqueue(f.ctx, d)
		}()
	}
	close(start)
	wg.Wait()
	fresh := 0
	for i := range producers {
		if errs[i] != nil {
			t.Fatalf("producer %d: %v", i, errs[i])
		}
		if results[i].Message.ID != results[0].Message.ID {
			t.Errorf("producer %d got message %s, producer 0 got %s", i, results[i].Message.ID, results[0].Message.ID)
		}
		if !results[i].Deduplicated {
			fresh++
		}
	}
	if fresh != 1 {
		t.Errorf("%d producers inserted, want exactly 1", fresh)
	}
	if n := f.count("dedupe_key = 'payment-7'"); n != 1 {
		t.Errorf("%d rows, want 1", n)
	}
}

// Concurrent duplicates inside transactions: the loser waits for the winner's
// transaction, and when the winner rolls back the loser inserts instead.
func TestDuplicateWaitsForRolledBackHolder(t *testing.T) {
	f := newFixture(t)
	d := draft(`{}`)
	d.DedupeKey = "k"
	tx1, err := f.pool.Begin(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.store.WithTx(tx1).Enqueue(f.ctx, d); err != nil {
		t.Fatal(err)
	}
	done := make(chan outbox.EnqueueResult, 1)
	errc := make(chan error, 1)
	go func() {
		res, err := f.store.Enqueue(f.ctx, d)
		done <- res
		errc <- err
	}()
	// Give the second enqueue time to block on tx1's row, then roll back.
	waitForLockWait(t, f)
	if err := tx1.Rollback(f.ctx); err != nil {
		t.Fatal(err)
	}
	res := <-done
	if err := <-errc; err != nil || res.Deduplicated {
		t.Fatalf("second enqueue after rollback: %+v %v", res, err)
	}
	if n := f.count("true"); n != 1 {
		t.Errorf("%d rows, want 1", n)
	}
}

// waitForLockWait waits until some backend of the test database waits on a lock.
func waitForLockWait(t *testing.T, f *fixture) {
	t.Helper()
	for range 500 {
		var waiting bool
		err := f.pool.QueryRow(f.ctx, `SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock')`).Scan(&waiting)
		if err != nil {
			t.Fatal(err)
		}
		if waiting {
			return
		}
		sleepBriefly()
	}
	t.Fatal("no backend ever waited on a lock")
}
