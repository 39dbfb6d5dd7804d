package integration

import (
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/pgoutbox/pgoutbox/db"
	"github.com/pgoutbox/pgoutbox/outbox"
)

// The claim and lock statements report, on each keyed row, how many heads
// their walk passed because another batch held them (skipped): the store
// moves a crowded claimer elsewhere on that count (outbox/cursor.go). With
// the heads of the first 6 of 20 keys locked by a batch, a walk from the
// first key passes those 6 and takes the next ones, each reporting 6; a
// walk that starts past them reports 0.
func TestWalksCountTheHeadsOthersHold(t *testing.T) {
	f := newFixture(t)
	const keys, held, limit = 20, 6, 4
	var drafts []outbox.Draft
	for i := range keys {
		drafts = append(drafts, keyedDraft(fmt.Sprintf("key-%02d", i), "1"))
	}
	if _, err := f.store.EnqueueMany(f.ctx, drafts); err != nil {
		t.Fatal(err)
	}
	holder, err := outbox.NewPostgresStore(f.pool).LockBatch(f.ctx, lockReq(held))
	if err != nil || len(holder.Messages()) != held {
		t.Fatalf("holding batch: %v, %d messages", err, len(holder.Messages()))
	}
	t.Cleanup(func() { _ = holder.Release(f.ctx) })
	lane, target := outbox.LaneCanonical, outbox.TargetProtocolProjector
	scanFromStart := time.Date(-4000, 1, 1, 0, 0, 0, 0, time.UTC)

	check := func(t *testing.T, afterKey string, wantFirst string, wantSkipped int64, rows func(afterKey string) ([]string, []int64)) {
		t.Helper()
		got, skipped := rows(afterKey)
		if len(got) != limit || got[0] != wantFirst {
			t.Fatalf("walk after %q took %v, want %d heads from %s", afterKey, got, limit, wantFirst)
		}
		for i, s := range skipped {
			if s != wantSkipped {
				t.Errorf("walk after %q: %s reports %d heads skipped, want %d", afterKey, got[i], s, wantSkipped)
			}
		}
	}

	t.Run("claim", func(t *testing.T) {
		claim := func(afterKey string) ([]string, []int64) {
			tx, err := f.pool.Begin(f.ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = tx.Rollback(f.ctx) }() // nothing claimed stays claimed
			rows, err := db.New(tx).MessageClaim(f.ctx, db.MessageClaimParams{
				LeaseMicros: time.Minute.Microseconds(), Lane: lane, Target: target, Max: limit,
				AfterAvailableAt: scanFromStart, AfterKey: afterKey, AckIDs: []int64{}, AckTokens: nil, ConsumerID: "walker",
			})
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			var skipped []int64
			for _, r := range rows {
				got, skipped = append(got, *r.OrderingKey), append(skipped, r.Skipped)
			}
			return got, skipped
		}
		check(t, "", "key-06", held, claim)
		check(t, "key-09", "key-10", 0, claim)
	})
	t.Run("rows the walk did not take", func(t *testing.T) {
		// An unkeyed message, and the acked message of the same claim,
		// report -1: only heads the walk took count towards crowding.
		d := draft("1")
		d.Target = "elsewhere"
		first := f.enqueue(f.store, d)
		got, err := f.store.Claim(f.ctx, outbox.ClaimRequest{Lane: lane, Target: "elsewhere", Limit: 1, Lease: time.Minute, ConsumerID: "walker"})
		if err != nil || len(got) != 1 {
			t.Fatalf("claim: %v %v", got, err)
		}
		f.enqueue(f.store, d)
		id, token := parseReceiptForTest(t, got[0])
		rows, err := db.New(f.pool).MessageClaim(f.ctx, db.MessageClaimParams{
			LeaseMicros: time.Minute.Microseconds(), Lane: lane, Target: "elsewhere", Max: 1,
			AfterAvailableAt: scanFromStart, AckIDs: []int64{id}, AckTokens: []pgtype.UUID{token}, ConsumerID: "walker",
		})
		if err != nil || len(rows) != 2 {
			t.Fatalf("claim and ack: %d rows, %v", len(rows), err)
		}
		for _, r := range rows {
			if r.Skipped != -1 {
				t.Errorf("row %d (%s, first %s) reports %d heads skipped, want -1", r.ID, r.Status, first.ID, r.Skipped)
			}
		}
	})
	t.Run("lock", func(t *testing.T) {
		lock := func(afterKey string) ([]string, []int64) {
			tx, err := f.pool.Begin(f.ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = tx.Rollback(f.ctx) }()
			rows, err := db.New(tx).MessageLockDue(f.ctx, db.MessageLockDueParams{
				Lane: lane, Target: target, Max: limit, AfterAvailableAt: scanFromStart, AfterKey: afterKey, LockedIDs: []int64{},
			})
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			var skipped []int64
			for _, r := range rows {
				got, skipped = append(got, *r.PgoutboxMessage.OrderingKey), append(skipped, r.Skipped)
			}
			return got, skipped
		}
		check(t, "", "key-06", held, lock)
		check(t, "key-09", "key-10", 0, lock)
	})
}

// parseReceiptForTest reads a claimed message's id and claim token as the
// statements take them.
func parseReceiptForTest(t *testing.T, m outbox.Message) (int64, pgtype.UUID) {
	t.Helper()
	id, err := strconv.ParseInt(m.ID, 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	var token pgtype.UUID
	if err := token.Scan(m.ClaimToken); err != nil {
		t.Fatal(err)
	}
	return id, token
}
