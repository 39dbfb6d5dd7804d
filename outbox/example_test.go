package outbox_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver for Migrate

	"github.com/pgoutbox/pgoutbox/examples/orders"
	"github.com/pgoutbox/pgoutbox/outbox"
)

// Migrate once at start-up, from every replica if you like: concurrent calls
// wait for each other and a second run does nothing.
func ExampleMigrate() {
	db, err := sql.Open("pgx", os.Getenv("DATABASE_URL"))
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	if err := outbox.Migrate(context.Background(), db); err != nil {
		log.Fatal(err)
	}
	fmt.Println("schema up to date")
	// Output: schema up to date
}

// The outbox pattern: the order row and the message announcing it commit or
// roll back together. The order is written with the service's own
// sqlc-generated Querier; the message with a store bound to the same
// transaction.
func ExamplePostgresStore_WithTx() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, os.Getenv("DATABASE_URL"))
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	if err := orders.CreateSchema(ctx, pool); err != nil {
		log.Fatal(err)
	}
	store := outbox.NewPostgresStore(pool)

	tx, err := pool.Begin(ctx)
	if err != nil {
		log.Fatal(err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // a no-op after Commit

	order, err := orders.New(tx).OrderCreate(ctx, orders.OrderCreateParams{Customer: "ada", TotalCents: 4200})
	if err != nil {
		log.Fatal(err)
	}
	payload, err := json.Marshal(map[string]any{"order_id": order.ID, "total_cents": order.TotalCents})
	if err != nil {
		log.Fatal(err)
	}
	placed := outbox.Draft{
		Lane:    outbox.LaneCanonical,
		Target:  "order_placed_webhook",
		Payload: payload,
		// A retried request enqueues nothing new: same key, same draft.
		DedupeKey: fmt.Sprintf("order-%d-placed", order.ID),
	}
	res, err := store.WithTx(tx).Enqueue(ctx, placed)
	if err != nil {
		log.Fatal(err)
	}
	again, err := store.WithTx(tx).Enqueue(ctx, placed)
	if err != nil {
		log.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		log.Fatal(err)
	}
	fmt.Println("enqueued:", res.Message.Status, "deduplicated:", res.Deduplicated)
	fmt.Println("retried: same message:", again.Message.ID == res.Message.ID, "deduplicated:", again.Deduplicated)
	// Output:
	// enqueued: pending deduplicated: false
	// retried: same message: true deduplicated: true
}

// A consumer's loop: claim a batch under a lease, deliver each message, ack
// what was delivered and nack what was not, with a retry time.
func ExamplePostgresStore_Claim() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, os.Getenv("DATABASE_URL"))
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	store := outbox.NewPostgresStore(pool)
	for _, body := range []string{`{"ok":true}`, `{"ok":false}`, `{"ok":true}`} {
		if _, err := store.Enqueue(ctx, outbox.Draft{Lane: "billing", Target: "invoice_mailer", Payload: json.RawMessage(body)}); err != nil {
			log.Fatal(err)
		}
	}

	deliver := func(m outbox.Message) error {
		var body struct{ OK bool }
		if err := json.Unmarshal(m.Payload, &body); err != nil {
			return err
		}
		if !body.OK {
			return errors.New("mail server said 451")
		}
		return nil
	}

	msgs, err := store.Claim(ctx, outbox.ClaimRequest{
		Lane: "billing", Target: "invoice_mailer", Limit: 10, Lease: 30 * time.Second, ConsumerID: "mailer-1",
	})
	if err != nil {
		log.Fatal(err)
	}
	for _, m := range msgs {
		if err := deliver(m); err != nil {
			outcome, err := store.Nack(ctx, m.ID, m.ClaimToken, err.Error(), time.Now().Add(time.Minute))
			if err != nil {
				log.Fatal(err)
			}
			fmt.Println("attempt", m.AttemptCount, "failed:", outcome)
			continue
		}
		acked, err := store.Ack(ctx, m.ID, m.ClaimToken)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println("attempt", m.AttemptCount, "delivered, acked:", acked)
	}
	// Output:
	// attempt 1 delivered, acked: true
	// attempt 1 failed: requeued
	// attempt 1 delivered, acked: true
}

// A scoped view serves one tenant and cannot touch another's messages.
func ExamplePostgresStore_Scoped() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, os.Getenv("DATABASE_URL"))
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	store := outbox.NewPostgresStore(pool)
	acme, err := store.Scoped("acme")
	if err != nil {
		log.Fatal(err)
	}
	globex, err := store.Scoped("globex")
	if err != nil {
		log.Fatal(err)
	}
	res, err := acme.Enqueue(ctx, outbox.Draft{Lane: "events", Target: "audit", Payload: json.RawMessage(`{}`)})
	if err != nil {
		log.Fatal(err)
	}
	_, err = globex.Get(ctx, res.Message.ID)
	fmt.Println("globex sees acme's message:", !errors.Is(err, outbox.ErrNotFound))
	_, err = store.Scoped(" ")
	fmt.Println(err)
	// Output:
	// globex sees acme's message: false
	// outbox: scoped: invalid scope: must not be blank
}

// Events of one order carry its id as their ordering key: they are handed
// out one at a time, in the order they were enqueued, while other orders
// (and unkeyed messages) go on. The second event comes only once the first
// is acked.
func ExampleDraft_orderingKey() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, os.Getenv("DATABASE_URL"))
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	store, err := outbox.NewPostgresStore(pool).Scoped("example-ordering")
	if err != nil {
		log.Fatal(err)
	}
	for _, event := range []string{`"placed"`, `"paid"`} {
		_, err := store.Enqueue(ctx, outbox.Draft{
			Lane: outbox.LaneCanonical, Target: outbox.TargetProtocolProjector,
			OrderingKey: "order-42", Payload: json.RawMessage(event),
			Headers: map[string]string{"content-type": "application/json"},
		})
		if err != nil {
			log.Fatal(err)
		}
	}
	req := outbox.ClaimRequest{
		Lane: outbox.LaneCanonical, Target: outbox.TargetProtocolProjector,
		Limit: 10, Lease: time.Minute, ConsumerID: "example",
	}
	first, err := store.Claim(ctx, req)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(len(first), string(first[0].Payload), first[0].Headers["content-type"])
	if _, err := store.Ack(ctx, first[0].ID, first[0].ClaimToken); err != nil {
		log.Fatal(err)
	}
	second, err := store.Claim(ctx, req)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(len(second), string(second[0].Payload))
	// Output:
	// 1 "placed" application/json
	// 1 "paid"
}

// A dead letter holds its ordering key, so the key's later messages wait,
// until an operator redrives it or releases the key; a released dead letter
// says so in OrderingKeyReleased.
func ExampleMessage_HoldsOrderingKey() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, os.Getenv("DATABASE_URL"))
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	store, err := outbox.NewPostgresStore(pool).Scoped("example-release")
	if err != nil {
		log.Fatal(err)
	}
	_, err = store.Enqueue(ctx, outbox.Draft{
		Lane: outbox.LaneCanonical, Target: outbox.TargetProtocolProjector,
		OrderingKey: "order-7", Payload: json.RawMessage(`"placed"`),
	})
	if err != nil {
		log.Fatal(err)
	}
	claimed, err := store.Claim(ctx, outbox.ClaimRequest{
		Lane: outbox.LaneCanonical, Target: outbox.TargetProtocolProjector,
		Limit: 1, Lease: time.Minute, ConsumerID: "example",
	})
	if err != nil {
		log.Fatal(err)
	}
	id := claimed[0].ID
	if _, err := store.DeadLetter(ctx, id, claimed[0].ClaimToken, "unparseable"); err != nil {
		log.Fatal(err)
	}
	show := func() {
		m, err := store.Get(ctx, id)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(m.Status, "released:", m.OrderingKeyReleased, "holds:", m.HoldsOrderingKey())
	}
	show()
	if _, err := store.ReleaseOrderingKey(ctx, outbox.LaneCanonical, outbox.TargetProtocolProjector, "order-7"); err != nil {
		log.Fatal(err)
	}
	show()
	// Output:
	// dead_letter released: false holds: true
	// dead_letter released: true holds: false
}
