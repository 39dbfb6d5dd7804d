package integration

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/pgoutbox/pgoutbox/db"
	"github.com/pgoutbox/pgoutbox/internal/pgtest"
	"github.com/pgoutbox/pgoutbox/outbox"
)

// The benchmarks here put each library call next to its baseline, the same
// generated statement issued through db.Queries with nothing around it, and
// alternate the two inside one loop so that both see the same server, cache
// and table size. Each reports the library's ns/op, the baseline's, and their
// ratio (x-baseline: 1.00 means no overhead):
//
//	go test -run '^$' -bench . -benchtime 2000x ./integration
//
// They run on the test server, whose settings (fsync, synchronous_commit and
// full_page_writes off) leave CPU and round trips, not disk flushes, in the
// figures; durable figures against River come from `make bench`.

// alternate runs lib and base b.N times each, interleaved, and reports their
// times. prepare runs before each pair, untimed.
func alternate(b *testing.B, prepare func(i int), lib, base func(i int)) {
	b.Helper()
	var libT, baseT time.Duration
	for i := 0; b.Loop(); i++ {
		if prepare != nil {
			prepare(i)
		}
		start := time.Now()
		if i%2 == 0 { // take turns at going first
			lib(i)
			mid := time.Now()
			base(i)
			libT, baseT = libT+mid.Sub(start), baseT+time.Since(mid)
		} else {
			base(i)
			mid := time.Now()
			lib(i)
			baseT, libT = baseT+mid.Sub(start), libT+time.Since(mid)
		}
	}
	n := float64(b.N)
	b.ReportMetric(float64(libT.Nanoseconds())/n, "ns/op")
	b.ReportMetric(float64(baseT.Nanoseconds())/n, "baseline-ns/op")
	b.ReportMetric(float64(libT)/float64(baseT), "x-baseline")
}

func inTx(ctx context.Context, b *testing.B, d *pgtest.DB, fn func(pgx.Tx) error) {
	b.Helper()
	if err := pgx.BeginFunc(ctx, d.Pool, fn); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkEnqueueInTx: Enqueue inside a caller's transaction (default
// options, so NOTIFY at most every 10 ms) against the generated MessageInsert
// without NOTIFY, one message and one commit per operation.
func BenchmarkEnqueueInTx(b *testing.B) {
	d := pgtest.NewDB(b)
	ctx := b.Context()
	store := outbox.NewPostgresStore(d.Pool)
	payload := json.RawMessage(`{"order_id":42,"event":"order.created"}`)
	alternate(b, nil, func(int) {
		inTx(ctx, b, d, func(tx pgx.Tx) error {
			_, err := store.WithTx(tx).Enqueue(ctx, outbox.Draft{Lane: "bench", Target: "lib", Payload: payload})
			return err
		})
	}, func(int) {
		inTx(ctx, b, d, func(tx pgx.Tx) error {
			_, err := db.New(tx).MessageInsert(ctx, db.MessageInsertParams{
				Scope: "", Lane: "bench", Target: "base", Payload: payload, MaxAttempts: outbox.DefaultMaxAttempts,
			})
			return err
		})
	})
}

// BenchmarkClaimAndAck100: one relay step, claiming 100 messages and acking
// the previous step's 100 in the same statement, through ClaimAndAck against
// the generated MessageClaim with the same arguments (and the same cursor:
// each claim continues after the last one, see outbox/cursor.go).
func BenchmarkClaimAndAck100(b *testing.B) {
	const batch = 100
	d := pgtest.NewDB(b)
	ctx := b.Context()
	store := outbox.NewPostgresStore(d.Pool, outbox.WithNotify(false))
	q := db.New(d.Pool)
	fill := func(target string) {
		drafts := make([]outbox.Draft, 10*batch)
		for i := range drafts {
			drafts[i] = outbox.Draft{Lane: "bench", Target: target, Payload: json.RawMessage(`{}`)}
		}
		if _, err := store.EnqueueMany(ctx, drafts); err != nil {
			b.Fatal(err)
		}
	}
	left := 0 // pending messages on each side
	prepare := func(int) {
		if left < batch {
			fill("lib")
			fill("base")
			left += 10 * batch
		}
		left -= batch
	}
	var libAcks []outbox.Receipt
	baseIDs, baseTokens := []int64{}, []pgtype.UUID{}
	start, startID := time.Date(-4000, 1, 1, 0, 0, 0, 0, time.UTC), int64(0)
	lib := func(int) {
		msgs, _, err := store.ClaimAndAck(ctx, outbox.ClaimRequest{
			Lane: "bench", Target: "lib", Limit: batch, Lease: time.Minute, ConsumerID: "bench",
		}, libAcks)
		if err != nil || len(msgs) != batch {
			b.Fatalf("claimed %d: %v", len(msgs), err)
		}
		libAcks = libAcks[:0]
		for _, m := range msgs {
			libAcks = append(libAcks, m.Receipt())
		}
	}
	base := func(int) {
		rows, err := q.MessageClaim(ctx, db.MessageClaimParams{
			LeaseMicros: time.Minute.Microseconds(), Lane: "bench", Target: "base", Max: batch,
			AfterAvailableAt: start, AfterID: startID, AckIDs: baseIDs, AckTokens: baseTokens, ConsumerID: "bench",
		})
		if err != nil {
			b.Fatal(err)
		}
		baseIDs, baseTokens = baseIDs[:0], baseTokens[:0]
		for _, r := range rows {
			if r.Status == string(outbox.StatusClaimed) {
				baseIDs, baseTokens = append(baseIDs, r.ID), append(baseTokens, r.ClaimToken)
				// Continue after the last claimed row, as the store's
				// cursor does (claimed rows come back in claim order).
				start, startID = r.AvailableAt, r.ID
			}
		}
		if len(baseIDs) != batch {
			b.Fatalf("baseline claimed %d", len(baseIDs))
		}
	}
	alternate(b, prepare, lib, base)
}
