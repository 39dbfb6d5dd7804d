// Command demo is pgoutbox's end-to-end demo, the one `make demo` runs: it
// migrates the schema, places orders that each write an order row (the
// service's own sqlc Querier, package examples/orders) and an outbox message
// in one transaction, then runs consumers that claim, ack and nack them, and
// prints what happened: a rolled-back checkout leaves no message, a retried
// request is deduplicated, a webhook's 503 is retried, a refused address is
// dead-lettered, and a crashed consumer's claim is taken over when its lease
// expires.
//
//	go run ./examples/demo [--orders 16] [--consumers 3] [--database-url URL]
//
// Without a database URL ($DATABASE_URL or --database-url) it starts
// PostgreSQL with Testcontainers (the image of $OUTBOX_TEST_POSTGRES_IMAGE;
// `make demo` builds one when no registry can supply it). It is a program of
// its own, not an outboxctl command, so that the operator's binary does not
// carry the container stack.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	tclog "github.com/testcontainers/testcontainers-go/log"

	"github.com/pgoutbox/pgoutbox/examples/orders"
	"github.com/pgoutbox/pgoutbox/internal/pgserver"
	"github.com/pgoutbox/pgoutbox/outbox"
)

// The demo's customers. The webhook the consumers call has two quirks, so
// that the demo shows retries and dead letters: it answers grace's orders
// with a 503 the first time, and refuses eve's address every time. mallory's
// checkout fails after the order row is written, so her transaction rolls
// back, message and all.
var demoCustomers = []string{"ada", "grace", "linus", "eve", "barbara", "mallory", "ken", "margaret"} //nolint:gochecknoglobals // fixed demo data

const (
	demoLane        = outbox.LaneCanonical
	demoTarget      = "order_webhook"
	demoLease       = time.Second
	demoRetryDelay  = 200 * time.Millisecond
	demoMaxAttempts = 3
)

type demo struct {
	out   io.Writer
	mu    sync.Mutex
	start time.Time
	pool  *pgxpool.Pool
	store *outbox.PostgresStore
}

func (d *demo) logf(format string, args ...any) {
	d.mu.Lock()
	defer d.mu.Unlock()
	fmt.Fprintf(d.out, "[%5.2fs] %s\n", time.Since(d.start).Seconds(), fmt.Sprintf(format, args...))
}

func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, "Usage: go run ./examples/demo [flags]\n\n"+
			"Migrates the schema, places orders that each write an order row and an outbox\n"+
			"message in one transaction, then runs consumers that claim, ack and nack them,\n"+
			"and prints what happened. Without a database URL it starts PostgreSQL in a\n"+
			"container with Testcontainers (image $"+pgserver.ImageEnv+", default "+pgserver.DefaultImage+").\n\n")
		fs.PrintDefaults()
	}
	url := fs.String("database-url", os.Getenv("DATABASE_URL"), "PostgreSQL connection string (default $DATABASE_URL; empty: start a container)")
	nOrders := fs.Int("orders", 16, "orders to place")
	consumers := fs.Int("consumers", 3, "concurrent consumers")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	if fs.NArg() > 0 {
		return usagef("unexpected arguments %q", fs.Args())
	}
	if *nOrders < 1 || *nOrders > 10_000 {
		return usagef("--orders must be between 1 and 10000, got %d", *nOrders)
	}
	if *consumers < 2 || *consumers > 64 {
		return usagef("--consumers must be between 2 and 64, got %d", *consumers)
	}

	d := &demo{out: stdout, start: time.Now()}
	if *url == "" {
		tclog.SetDefault(tclog.NewNoopLogger())
		d.logf("no DATABASE_URL: starting PostgreSQL (%s) with Testcontainers", pgserver.Image())
		srv, err := pgserver.StartContainer(ctx, nil)
		if err != nil {
			return err
		}
		defer func() { _ = srv.Stop() }()
		*url = srv.URL
	}
	pool, err := connect(ctx, *url)
	if err != nil {
		return err
	}
	defer pool.Close()
	d.pool = pool
	d.logf("connected to %s", where(pool.Config().ConnConfig))

	db := stdlib.OpenDBFromPool(pool)
	err = outbox.Migrate(ctx, db)
	_ = db.Close()
	if err != nil {
		return err
	}
	if err := orders.CreateSchema(ctx, pool); err != nil {
		return err
	}
	// Each run is a scope of its own, so reruns against one database never
	// see each other's messages.
	scope := "demo-" + randomHex(4)
	d.store, err = outbox.NewPostgresStore(pool).Scoped(scope)
	if err != nil {
		return err
	}
	d.logf("schema migrated; this run uses scope %q", scope)

	placed, err := d.placeOrders(ctx, *nOrders)
	if err != nil {
		return err
	}
	if err := d.deliver(ctx, *consumers); err != nil {
		return err
	}
	return d.summarize(ctx, placed)
}

// placement records what placing the orders did.
type placement struct {
	committed  map[int64]string // order id -> message id
	customers  map[int64]string // order id -> customer
	rolledBack []int64
}

// placeOrders writes each order and its message in one transaction.
func (d *demo) placeOrders(ctx context.Context, n int) (*placement, error) {
	fmt.Fprintln(d.out, "\n== Placing orders: order row + outbox message, one transaction each")
	p := &placement{committed: map[int64]string{}, customers: map[int64]string{}}
	first := int64(0)
	for i := range n {
		customer := demoCustomers[i%len(demoCustomers)]
		orderID, msgID, err := d.placeOrder(ctx, customer, int64(1000+i*250))
		switch {
		case errors.Is(err, errCheckoutFailed):
			p.rolledBack = append(p.rolledBack, orderID)
			d.logf("order %d for %s: checkout failed after both writes; rolled back", orderID, customer)
			continue
		case err != nil:
			return nil, err
		}
		p.committed[orderID] = msgID
		p.customers[orderID] = customer
		if first == 0 {
			first = orderID
		}
		d.logf("order %d for %s committed with message %s", orderID, customer, msgID)
	}
	// A client retries its request for the first order: the dedupe key maps
	// the retry onto the message already there. A buggy client that sends a
	// different body under the same key is refused.
	res, err := d.store.Enqueue(ctx, orderDraft(first, p.customers[first]))
	if err != nil {
		return nil, err
	}
	d.logf("a retried request for order %d: deduplicated=%v onto message %s", first, res.Deduplicated, res.Message.ID)
	_, err = d.store.Enqueue(ctx, orderDraft(first, "someone else"))
	var conflict *outbox.ConflictError
	if !errors.As(err, &conflict) {
		return nil, fmt.Errorf("a conflicting retry was not refused: %w", err)
	}
	d.logf("a request for order %d with a different body under the same key: refused (%v)", first, conflict)
	return p, nil
}

var errCheckoutFailed = errors.New("checkout failed")

func (d *demo) placeOrder(ctx context.Context, customer string, cents int64) (int64, string, error) {
	tx, err := d.pool.Begin(ctx)
	if err != nil {
		return 0, "", err
	}
	defer func() { _ = tx.Rollback(ctx) }()
	order, err := orders.New(tx).OrderCreate(ctx, orders.OrderCreateParams{Customer: customer, TotalCents: cents})
	if err != nil {
		return 0, "", err
	}
	res, err := d.store.WithTx(tx).Enqueue(ctx, orderDraft(order.ID, customer))
	if err != nil {
		return 0, "", err
	}
	if customer == "mallory" {
		return order.ID, "", errCheckoutFailed // the deferred rollback undoes both writes
	}
	return order.ID, res.Message.ID, tx.Commit(ctx)
}

func orderDraft(orderID int64, customer string) outbox.Draft {
	payload, _ := json.Marshal(map[string]any{"order_id": orderID, "customer": customer})
	return outbox.Draft{
		Lane: demoLane, Target: demoTarget, Payload: payload,
		DedupeKey: fmt.Sprintf("order-%d-placed", orderID), MaxAttempts: demoMaxAttempts,
	}
}

// deliver runs consumers until every committed message is delivered or dead.
// First a consumer claims the oldest message and crashes, holding it until
// its lease expires; the others then deliver it along with the rest.
func (d *demo) deliver(ctx context.Context, consumers int) error {
	fmt.Fprintf(d.out, "\n== Delivering: %d consumers claim with a %s lease; the webhook fails some calls\n", consumers, demoLease)
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	crashed := fmt.Sprintf("consumer-%d", consumers)
	held, err := d.store.Claim(ctx, outbox.ClaimRequest{Lane: demoLane, Target: demoTarget, Limit: 1, Lease: demoLease, ConsumerID: crashed})
	if err != nil {
		return err
	}
	for _, m := range held {
		d.logf("%s claimed message %s and crashed; it waits for its lease to expire", crashed, m.ID)
	}
	var (
		wg       sync.WaitGroup
		errMu    sync.Mutex
		firstErr error
	)
	for i := 1; i < consumers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := d.consume(ctx, fmt.Sprintf("consumer-%d", i)); err != nil {
				errMu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				errMu.Unlock()
				cancel()
			}
		}()
	}
	wg.Wait()
	return firstErr
}

func (d *demo) consume(ctx context.Context, name string) error {
	for {
		msgs, err := d.store.Claim(ctx, outbox.ClaimRequest{Lane: demoLane, Target: demoTarget, Limit: 3, Lease: demoLease, ConsumerID: name})
		if err != nil {
			return err
		}
		if len(msgs) == 0 {
			done, err := d.settled(ctx)
			if err != nil || done {
				return err
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("%s: gave up waiting for messages to settle: %w", name, ctx.Err())
			case <-time.After(50 * time.Millisecond):
			}
			continue
		}
		for _, m := range msgs {
			if err := d.handle(ctx, name, m); err != nil {
				return err
			}
		}
	}
}

// handle calls the (simulated) webhook and acks or nacks.
func (d *demo) handle(ctx context.Context, name string, m outbox.Message) error {
	var body struct {
		OrderID  int64  `json:"order_id"`
		Customer string `json:"customer"`
	}
	if err := json.Unmarshal(m.Payload, &body); err != nil {
		return err
	}
	var callErr error
	switch {
	case body.Customer == "eve":
		callErr = errors.New("400 Bad Request: invalid shipping address")
	case body.Customer == "grace" && m.AttemptCount == 1:
		callErr = errors.New("503 Service Unavailable")
	}
	if callErr == nil {
		ok, err := d.store.Ack(ctx, m.ID, m.ClaimToken)
		if err != nil {
			return err
		}
		d.logf("%s delivered message %s (order %d, attempt %d); ack=%v", name, m.ID, body.OrderID, m.AttemptCount, ok)
		return nil
	}
	outcome, err := d.store.Nack(ctx, m.ID, m.ClaimToken, callErr.Error(), time.Now().Add(demoRetryDelay))
	if err != nil {
		return err
	}
	d.logf("%s failed message %s (order %d, attempt %d/%d): %v -> %s", name, m.ID, body.OrderID, m.AttemptCount, m.MaxAttempts, callErr, outcome)
	return nil
}

// settled reports whether no message is pending or claimed any more.
func (d *demo) settled(ctx context.Context) (bool, error) {
	for _, st := range []outbox.Status{outbox.StatusPending, outbox.StatusClaimed} {
		open, err := d.store.List(ctx, outbox.ListFilter{Status: st, Limit: 1})
		if err != nil || len(open) > 0 {
			return false, err
		}
	}
	return true, nil
}

func (d *demo) summarize(ctx context.Context, p *placement) error {
	fmt.Fprintln(d.out, "\n== Outcome")
	all, err := d.store.List(ctx, outbox.ListFilter{Limit: outbox.MaxListLimit})
	if err != nil {
		return err
	}
	counts := map[outbox.Status]int{}
	attempts := 0
	for _, m := range all {
		counts[m.Status]++
		attempts += m.AttemptCount
		if m.Status == outbox.StatusDeadLetter {
			fmt.Fprintf(d.out, "dead letter: message %s after %d attempts: %s\n", m.ID, m.AttemptCount, m.LastError)
		}
	}
	q := orders.New(d.pool)
	committed, err := q.OrderCountByIDs(ctx, mapKeys(p.committed))
	if err != nil {
		return err
	}
	ghosts, err := q.OrderCountByIDs(ctx, p.rolledBack)
	if err != nil {
		return err
	}
	fmt.Fprintf(d.out, "orders committed: %d, with %d outbox messages; orders rolled back: %d, of which %d rows and 0 messages remain\n",
		committed, len(all), len(p.rolledBack), ghosts)
	fmt.Fprintf(d.out, "delivered: %d, dead letters: %d, pending: %d, claimed: %d; deliveries attempted: %d\n",
		counts[outbox.StatusDelivered], counts[outbox.StatusDeadLetter], counts[outbox.StatusPending], counts[outbox.StatusClaimed], attempts)
	if len(all) != len(p.committed) || committed != int64(len(p.committed)) || ghosts != 0 ||
		counts[outbox.StatusDelivered]+counts[outbox.StatusDeadLetter] != len(all) {
		return fmt.Errorf("inconsistent outcome: %d committed orders, %d messages, %d rolled-back rows, %v", committed, len(all), ghosts, counts)
	}
	return nil
}

func mapKeys(m map[int64]string) []int64 {
	keys := make([]int64, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	return keys
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
