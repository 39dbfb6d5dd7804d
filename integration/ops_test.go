package integration

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pgoutbox/pgoutbox/outbox"
)

// deliverAll claims and acks every pending message of the default lane and target.
func (f *fixture) deliverAll(s *outbox.PostgresStore) int {
	f.t.Helper()
	n := 0
	for {
		got := f.claim(s, claimReq(outbox.MaxClaimLimit, time.Minute, "c"))
		if len(got) == 0 {
			return n
		}
		if _, err := s.AckMany(f.ctx, receipts(got)); err != nil {
			f.t.Fatal(err)
		}
		n += len(got)
	}
}

func (f *fixture) fill(s *outbox.PostgresStore, n int, d outbox.Draft) {
	f.t.Helper()
	drafts := make([]outbox.Draft, n)
	for i := range drafts {
		drafts[i] = d
	}
	for len(drafts) > 0 {
		k := min(len(drafts), outbox.MaxBatch)
		if _, err := s.EnqueueMany(f.ctx, drafts[:k]); err != nil {
			f.t.Fatal(err)
		}
		drafts = drafts[k:]
	}
}

func TestPurgeRunsInBoundedBatches(t *testing.T) {
	f := newFixture(t)
	f.fill(f.store, 2500, draft(`{}`))
	f.deliverAll(f.store)
	other := draft(`"keep"`)
	other.Target = outbox.TargetA2AWebhook
	f.fill(f.store, 40, other) // pending rows in between stay
	time.Sleep(10 * time.Millisecond)
	var progress []int64
	n, err := f.store.Purge(f.ctx, outbox.PurgeRequest{BatchSize: 100, Progress: func(d int64) { progress = append(progress, d) }})
	if err != nil || n != 2500 {
		t.Fatalf("purged %d (%v), want 2500", n, err)
	}
	if len(progress) < 25 {
		t.Fatalf("%d batches for 2500 rows of batch size 100", len(progress))
	}
	for i := 1; i < len(progress); i++ {
		if progress[i]-progress[i-1] > 100 {
			t.Fatalf("batch %d deleted %d rows, more than its size", i, progress[i]-progress[i-1])
		}
	}
	if left := f.count("true"); left != 40 {
		t.Fatalf("%d rows left, want the 40 pending", left)
	}
}

// An interrupted purge stops between batches and reports what it deleted.
func TestPurgeStopsBetweenBatchesWhenCancelled(t *testing.T) {
	f := newFixture(t)
	f.fill(f.store, 1000, draft(`{}`))
	f.deliverAll(f.store)
	time.Sleep(10 * time.Millisecond)
	ctx, cancel := context.WithCancel(f.ctx)
	defer cancel()
	n, err := f.store.Purge(ctx, outbox.PurgeRequest{BatchSize: 100, Progress: func(d int64) {
		if d >= 300 {
			cancel()
		}
	}})
	if !errors.Is(err, context.Canceled) || n != 300 {
		t.Fatalf("purge returned %d, %v; want 300 and context.Canceled", n, err)
	}
	if left := f.count("true"); left != 700 {
		t.Fatalf("%d rows left, want 700: the reported count must match what was deleted", left)
	}
}

func TestPurgeKeepsRecentAndUnfinished(t *testing.T) {
	c := newClock()
	f := newFixture(t, outbox.WithClock(c.Now))
	f.fill(f.store, 10, draft(`{}`))
	f.deliverAll(f.store) // delivered at t0
	c.Advance(2 * time.Hour)
	f.fill(f.store, 5, draft(`{}`))
	got := f.claim(f.store, claimReq(5, time.Minute, "c"))
	for _, m := range got[:2] {
		if ok, _ := f.store.Ack(f.ctx, m.ID, m.ClaimToken); !ok {
			t.Fatal("ack")
		}
	}
	if n, err := f.store.Purge(f.ctx, outbox.PurgeRequest{OlderThan: time.Hour}); err != nil || n != 10 {
		t.Fatalf("purged %d (%v), want the 10 delivered two hours ago", n, err)
	}
	if n := f.count("true"); n != 5 {
		t.Fatalf("%d left, want 5 (2 recently delivered, 3 claimed)", n)
	}
}

func TestRedriveByLaneTargetCoversManyBatches(t *testing.T) {
	f := newFixture(t)
	d := draft(`{}`)
	d.MaxAttempts = 1
	f.fill(f.store, 2300, d)
	for {
		got := f.claim(f.store, claimReq(500, time.Minute, "c"))
		if len(got) == 0 {
			break
		}
		for _, m := range got {
			if ok, err := f.store.DeadLetter(f.ctx, m.ID, m.ClaimToken, "HTTP 410 gone"); err != nil || !ok {
				t.Fatal(ok, err)
			}
		}
	}
	res, err := f.store.Redrive(f.ctx, outbox.RedriveRequest{Lane: outbox.LaneCanonical, Target: outbox.TargetProtocolProjector, ErrorContains: "410"})
	if err != nil || res.Redriven != 2300 {
		t.Fatalf("redrove %d (%v), want 2300", res.Redriven, err)
	}
	if n := f.count("status = 'pending' AND attempt_count = 0"); n != 2300 {
		t.Fatalf("%d pending with fresh attempts", n)
	}
}

// A scoped view cannot redrive or purge another scope's messages, even
// with their ids.
func TestRedriveAndPurgeStayInScope(t *testing.T) {
	f := newFixture(t)
	a := f.scoped(f.store, "a")
	b := f.scoped(f.store, "b")
	d := draft(`{}`)
	d.MaxAttempts = 1
	m := f.enqueue(a, d)
	got := f.claim(a, claimReq(1, time.Minute, "c"))
	if ok, _ := a.DeadLetter(f.ctx, got[0].ID, got[0].ClaimToken, "x"); !ok {
		t.Fatal("dead-letter")
	}
	res, err := b.Redrive(f.ctx, outbox.RedriveRequest{IDs: []string{m.ID}})
	if err != nil || res.Redriven != 0 || len(res.NotDead) != 1 {
		t.Fatalf("b redrove a's message: %+v %v", res, err)
	}
	if res, _ := b.Redrive(f.ctx, outbox.RedriveRequest{Lane: outbox.LaneCanonical, Target: outbox.TargetProtocolProjector}); res.Redriven != 0 {
		t.Fatal("b redrove a's dead letters by lane")
	}
	time.Sleep(10 * time.Millisecond)
	if n, _ := b.Purge(f.ctx, outbox.PurgeRequest{DeadLetters: true}); n != 0 {
		t.Fatal("b purged a's dead letter")
	}
	if n, _ := f.store.Purge(f.ctx, outbox.PurgeRequest{DeadLetters: true}); n != 0 {
		t.Fatal("the unscoped store purged a scoped dead letter")
	}
	if got := f.get(a, m.ID); got.Status != outbox.StatusDeadLetter {
		t.Fatalf("message %+v", got)
	}
}

// Stats without delivered counts reads only the partial indexes: on a table
// of 100k delivered messages its plan has no sequential scan and reads a
// few pages.
func TestStatsPlanAvoidsDeliveredRows(t *testing.T) {
	f := newFixture(t)
	pool, rec := tracedPool(t, f)
	store := outbox.NewPostgresStore(pool)
	f.fill(store, 2000, draft(`{}`))
	f.deliverAll(store)
	for _, stmt := range []string{
		`INSERT INTO pgoutbox_message (lane, target, payload, status, available_at, attempt_count, max_attempts, created_at, updated_at)
		 SELECT lane, target, payload, status, available_at, attempt_count, max_attempts, created_at, updated_at
		 FROM pgoutbox_message, generate_series(1, 50)`,
		`ANALYZE pgoutbox_message`,
	} {
		if _, err := pool.Exec(f.ctx, stmt); err != nil {
			t.Fatal(err)
		}
	}
	f.fill(store, 20, draft(`{}`))
	stats, err := store.Stats(f.ctx, false)
	if err != nil || len(stats) != 1 || stats[0].Pending != 20 {
		t.Fatalf("stats %+v %v", stats, err)
	}
	call := rec.last("-- name: MessageStats")
	var plan []map[string]any
	if err := pool.QueryRow(f.ctx, "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) "+call.SQL, call.Args...).Scan(&plan); err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(plan)
	if strings.Contains(string(raw), `"Seq Scan"`) {
		t.Errorf("stats plan scans the table: %s", raw)
	}
	var top struct {
		Plan struct {
			SharedHit  int `json:"Shared Hit Blocks"`
			SharedRead int `json:"Shared Read Blocks"`
		} `json:"Plan"`
	}
	b, _ := json.Marshal(plan[0])
	_ = json.Unmarshal(b, &top)
	if pages := top.Plan.SharedHit + top.Plan.SharedRead; pages > 200 {
		t.Errorf("stats read %d pages on a table of 102k rows with 20 live ones", pages)
	}
	t.Logf("stats read %d pages", top.Plan.SharedHit+top.Plan.SharedRead)
}
