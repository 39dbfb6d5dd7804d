package integration

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgoutbox/pgoutbox/internal/pgtest"
	"github.com/pgoutbox/pgoutbox/outbox"
)

// The claim statement can be chosen as a deadlock victim (SKIP LOCKED does
// not make it wait-free, and its acks wait for row locks). The store runs an
// aborted statement again, so the caller gets its claims and acks instead of
// an error; in the caller's own transaction it reports the error.
//
// The cycle is built by hand: another session locks the message being
// acked, the claim locks and claims the due message and then waits for the
// acked one, and the other session then updates the claimed message. With
// a long deadlock_timeout in the other session, the claim's backend detects
// the cycle and is the one aborted.
func TestClaimAndAckRunsAgainAfterADeadlock(t *testing.T) {
	t.Parallel()
	d := pgtest.NewDB(t)
	ctx := t.Context()
	store := outbox.NewPostgresStore(d.Pool)

	run := func(s *outbox.PostgresStore, acked, due outbox.Message, rc outbox.Receipt) ([]outbox.Message, []bool, error) {
		other, err := d.Pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = other.Rollback(context.Background()) }()
		if _, err := other.Exec(ctx, `SET LOCAL deadlock_timeout = '1min'`); err != nil {
			t.Fatal(err)
		}
		if _, err := other.Exec(ctx, `SELECT 1 FROM pgoutbox_message WHERE id = $1::bigint FOR UPDATE`, acked.ID); err != nil {
			t.Fatal(err)
		}
		type result struct {
			claimed []outbox.Message
			acked   []bool
			err     error
		}
		done := make(chan result, 1)
		go func() {
			c, a, err := s.ClaimAndAck(ctx, claimReq(1, time.Minute, "c"), []outbox.Receipt{rc})
			done <- result{c, a, err}
		}()
		eventually(t, 10*time.Second, "the claim waits for the acked message's lock", func() bool {
			var n int
			_ = d.Pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
				WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%MessageClaim%'`).Scan(&n)
			return n == 1
		})
		// Waits for the claim's transaction: a cycle, which the claim's
		// backend detects after its deadlock_timeout and breaks by aborting.
		if _, err := other.Exec(ctx, `UPDATE pgoutbox_message SET updated_at = updated_at WHERE id = $1::bigint`, due.ID); err != nil {
			t.Fatalf("the other session: %v", err)
		}
		if err := other.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		r := <-done
		return r.claimed, r.acked, r.err
	}

	enqueueAndClaim := func() (outbox.Message, outbox.Message, outbox.Receipt) {
		first, err := store.Enqueue(ctx, draft(`1`))
		if err != nil {
			t.Fatal(err)
		}
		got, err := store.Claim(ctx, claimReq(1, time.Minute, "c"))
		if err != nil || len(got) != 1 || got[0].ID != first.Message.ID {
			t.Fatalf("claim: %v %v", got, err)
		}
		second, err := store.Enqueue(ctx, draft(`2`))
		if err != nil {
			t.Fatal(err)
		}
		return got[0], second.Message, outbox.Receipt{ID: got[0].ID, ClaimToken: got[0].ClaimToken}
	}

	acked, due, rc := enqueueAndClaim()
	claimed, ok, err := run(store, acked, due, rc)
	if err != nil {
		t.Fatalf("claim and ack after a deadlock: %v; want the statement run again", err)
	}
	if len(ok) != 1 || !ok[0] {
		t.Fatalf("acked %v; want the ack held", ok)
	}
	// The statement ran again at once, and the other session may not have
	// committed by then: its update still held the due message, which the
	// claim then skipped (SKIP LOCKED). Either way nothing is lost: the due
	// message is claimed by the statement run again, or by the next claim.
	if len(claimed) == 0 {
		claimed, err = store.Claim(ctx, claimReq(1, time.Minute, "c"))
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(claimed) != 1 || claimed[0].ID != due.ID {
		t.Fatalf("claimed %v; want the due message %s", claimed, due.ID)
	}

	// In the caller's transaction the deadlock is the caller's: it gets
	// the error, and nothing changed.
	acked, due, rc = enqueueAndClaim()
	tx, err := d.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(context.Background()) }()
	_, _, err = run(store.WithTx(tx), acked, due, rc)
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "40P01" {
		t.Fatalf("in the caller's transaction: %v; want the deadlock reported", err)
	}
	_ = tx.Rollback(ctx)
	m, err := store.Get(ctx, due.ID)
	if err != nil || m.Status != outbox.StatusPending {
		t.Fatalf("the due message after the failed claim: %v %v; want pending", m.Status, err)
	}
}
