package main

import (
	"context"
	"fmt"
	"time"

	"github.com/pgoutbox/pgoutbox/internal/benchkit"
	"github.com/pgoutbox/pgoutbox/outbox"
)

// The plan-stability scenario pins the likely cause of lock mode's
// continuous collapse (issue 11: 1,463 msg/s in one of three runs, against a
// median near 19,000): the mechanism below, made deterministic here, has
// that size; a continuous run hits it only by timing. Statements the store runs as prepared statements get a
// generic plan after five executions on a connection; made while the table
// is nearly empty (after a purge, a TRUNCATE, at the start of a burst), that
// plan reads the table sequentially, and every later execution on that
// connection reads the whole grown table until an ANALYZE invalidates it (up
// to a minute of autovacuum naptime; a benchmark run never sees one). Claims
// and locks of 64 messages or more are planned afresh (outbox/plans.go), but
// the statements that write a batch's outcome by id (MessageFinishLocked,
// MessageAckMany, MessageExtendLeases) and single acks keep prepared plans.
// Whether a continuous run collapses then depends on timing: on whether one
// pooled connection ran such a statement five times before the table grew.
//
// Each path here runs on one connection: first small batches on a
// nearly empty table (as a relay does at the start of a run), then the
// table grows, then full batches; a control does only the second part on a
// fresh connection. A path whose full batches read the table sequentially
// has the fault.

const (
	planSmallRuns  = 8 // more than the five custom plans before a generic one
	planSmallBatch = 4
	planLargeRuns  = 10
	planLargeBatch = 256
)

type planPath struct {
	name string
	// run handles one batch of up to limit messages on store.
	run func(ctx context.Context, store *outbox.PostgresStore, limit int) (int, error)
}

func planPaths() []planPath {
	claim := func(ctx context.Context, store *outbox.PostgresStore, limit int) ([]outbox.Message, error) {
		return store.Claim(ctx, outbox.ClaimRequest{Lane: lane, Target: target, Limit: limit, Lease: time.Minute, ConsumerID: "plans"})
	}
	receipts := func(msgs []outbox.Message) []outbox.Receipt {
		out := make([]outbox.Receipt, len(msgs))
		for i, m := range msgs {
			out[i] = m.Receipt()
		}
		return out
	}
	return []planPath{
		{"lock mode: LockBatch, then Finish (MessageFinishLocked)", func(ctx context.Context, store *outbox.PostgresStore, limit int) (int, error) {
			b, err := store.LockBatch(ctx, outbox.LockRequest{Lane: lane, Target: target, Limit: limit})
			if err != nil || len(b.Messages()) == 0 {
				return 0, err // an empty batch holds nothing open
			}
			outcomes := make([]outbox.Outcome, len(b.Messages()))
			for i, m := range b.Messages() {
				outcomes[i] = outbox.Outcome{ID: m.ID}
			}
			_, err = b.Finish(ctx, outcomes)
			return len(outcomes), err
		}},
		{"claim mode: Claim, then AckMany (MessageAckMany)", func(ctx context.Context, store *outbox.PostgresStore, limit int) (int, error) {
			msgs, err := claim(ctx, store, limit)
			if err != nil {
				return 0, err
			}
			_, err = store.AckMany(ctx, receipts(msgs))
			return len(msgs), err
		}},
		{"claim mode: Claim, ExtendLeases (MessageExtendLeases), AckMany", func(ctx context.Context, store *outbox.PostgresStore, limit int) (int, error) {
			msgs, err := claim(ctx, store, limit)
			if err != nil {
				return 0, err
			}
			if _, err := store.ExtendLeases(ctx, receipts(msgs), time.Minute); err != nil {
				return 0, err
			}
			_, err = store.AckMany(ctx, receipts(msgs))
			return len(msgs), err
		}},
		{"claim mode: Claim, then Ack each (MessageAck)", func(ctx context.Context, store *outbox.PostgresStore, limit int) (int, error) {
			msgs, err := claim(ctx, store, limit)
			if err != nil {
				return 0, err
			}
			for _, m := range msgs {
				if _, err := store.Ack(ctx, m.ID, m.ClaimToken); err != nil {
					return 0, err
				}
			}
			return len(msgs), err
		}},
	}
}

const (
	variantPlanAfterSmall = "plans made on a nearly empty table"
	variantPlanControl    = "control: plans made on the grown table"
)

func (b *bencher) planStability() error {
	for _, p := range planPaths() {
		for _, smallFirst := range []bool{true, false} {
			if err := b.reset(); err != nil {
				return err
			}
			s, err := b.planPath(p, smallFirst)
			if err != nil {
				return fmt.Errorf("%s: %w", p.name, err)
			}
			variant := variantPlanControl
			if smallFirst {
				variant = variantPlanAfterSmall
			}
			b.r.add(scPlans, variant, p.name, s)
			fmt.Fprintf(b.log, "  %s, %s: %.0f msg/s, %d rows read sequentially in %d full batches\n",
				p.name, variant, s.rate, s.seqRows, planLargeRuns)
		}
	}
	return nil
}

// planPath runs one path on one connection of the harness's pool.
func (b *bencher) planPath(p planPath, smallFirst bool) (sample, error) {
	ctx := b.ctx
	var s sample
	// A fresh connection, with no plan cached: reading the table closes
	// the pool's sessions first.
	if _, err := b.h.Table(ctx, table); err != nil {
		return s, err
	}
	conn, err := b.h.Pool.Acquire(ctx)
	if err != nil {
		return s, err
	}
	released := false
	release := func() {
		if !released {
			conn.Release()
			released = true
		}
	}
	defer release()
	store := outbox.NewPostgresStore(conn.Conn(), outbox.WithNotify(false))
	if smallFirst {
		if err := benchkit.Fill(ctx, store, planSmallRuns*planSmallBatch); err != nil {
			return s, err
		}
		for range planSmallRuns {
			if _, err := p.run(ctx, store, planSmallBatch); err != nil {
				return s, err
			}
		}
	}
	// The table grows (through the pool, as producers would).
	if err := benchkit.Fill(ctx, outbox.NewPostgresStore(b.h.Pool, outbox.WithNotify(false)), b.o.growthPending); err != nil {
		return s, err
	}
	before, err := b.tableOnIdleConn(ctx)
	if err != nil {
		return s, err
	}
	start := time.Now()
	done := 0
	for range planLargeRuns {
		n, err := p.run(ctx, store, planLargeBatch)
		if err != nil {
			return s, err
		}
		done += n
	}
	s.rate = benchkit.Rate(int64(done), time.Since(start))
	release()
	// Reading the table settles the harness's sessions: the connection
	// closes and reports what it scanned.
	after, err := b.h.Table(ctx, table)
	if err != nil {
		return s, err
	}
	s.seqRows = after.SeqTuplesRead - before.SeqTuplesRead
	s.delivered = int64(done)
	return s, nil
}

// tableOnIdleConn reads the table's counters without closing the path's
// connection (whose plan cache is the point): counters of sessions still
// open may lag, which only makes the difference after larger.
func (b *bencher) tableOnIdleConn(ctx context.Context) (benchkit.TableStats, error) {
	return b.h.TableNoSettle(ctx, table)
}
