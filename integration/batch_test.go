package integration

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pgoutbox/pgoutbox/outbox"
)

func TestEnqueueManyStoresInOrder(t *testing.T) {
	f := newFixture(t)
	var drafts []outbox.Draft
	for i := range 50 {
		d := draft(`{"n":` + itoa(i) + `}`)
		if i%3 == 0 {
			d.DedupeKey = "k" + itoa(i)
		}
		if i%7 == 0 {
			d.Target = outbox.TargetA2AWebhook
		}
		drafts = append(drafts, d)
	}
	res, err := f.store.EnqueueMany(f.ctx, drafts)
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != len(drafts) {
		t.Fatalf("%d results for %d drafts", len(res), len(drafts))
	}
	for i, r := range res {
		var n struct{ N int }
		if err := json.Unmarshal(r.Message.Payload, &n); err != nil || n.N != i || r.Deduplicated ||
			r.Message.Target != drafts[i].Target || r.Message.DedupeKey != drafts[i].DedupeKey {
			t.Errorf("result %d = %+v", i, r)
		}
		if i > 0 && r.Message.ID <= res[i-1].Message.ID && len(r.Message.ID) <= len(res[i-1].Message.ID) {
			t.Errorf("ids out of order at %d", i)
		}
	}
	if n := f.count("true"); n != 50 {
		t.Errorf("%d rows", n)
	}
}

func TestEnqueueManyDedupesAgainstStoreAndItself(t *testing.T) {
	f := newFixture(t)
	stored := draft(`{"a":1}`)
	stored.DedupeKey = "taken"
	held := f.enqueue(f.store, stored)

	again := draft(`{ "a" : 1 }`)
	again.DedupeKey = "taken"
	twiceA := draft(`[1]`)
	twiceA.DedupeKey = "twice"
	res, err := f.store.EnqueueMany(f.ctx, []outbox.Draft{draft(`"plain"`), again, twiceA, twiceA})
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Deduplicated || !res[1].Deduplicated || res[1].Message.ID != held.ID ||
		res[2].Deduplicated || !res[3].Deduplicated || res[3].Message.ID != res[2].Message.ID {
		t.Fatalf("results %+v", res)
	}
	if n := f.count("true"); n != 3 {
		t.Errorf("%d rows, want 3", n)
	}
}

// A conflict anywhere in the batch writes nothing, and inside a caller's
// transaction leaves that transaction usable.
func TestEnqueueManyConflictWritesNothing(t *testing.T) {
	f := newFixture(t)
	stored := draft(`{"a":1}`)
	stored.DedupeKey = "taken"
	f.enqueue(f.store, stored)
	before := f.snapshot()

	clash := draft(`{"a":2}`)
	clash.DedupeKey = "taken"
	batch := []outbox.Draft{draft(`1`), draft(`2`), clash}
	_, err := f.store.EnqueueMany(f.ctx, batch)
	var cerr *outbox.ConflictError
	if !errors.Is(err, outbox.ErrConflict) || !errors.As(err, &cerr) || !strings.Contains(err.Error(), "draft 2") {
		t.Fatalf("err = %v, want a conflict on draft 2", err)
	}
	if f.snapshot() != before {
		t.Fatal("a conflicting batch wrote rows")
	}
	tx, err := f.pool.Begin(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	s := f.store.WithTx(tx)
	if _, err := s.Enqueue(f.ctx, draft(`"kept"`)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.EnqueueMany(f.ctx, batch); !errors.Is(err, outbox.ErrConflict) {
		t.Fatalf("in tx: %v", err)
	}
	if _, err := s.EnqueueMany(f.ctx, batch[:2]); err != nil {
		t.Fatalf("the caller's transaction is unusable after a conflict: %v", err)
	}
	if err := tx.Commit(f.ctx); err != nil {
		t.Fatal(err)
	}
	if n := f.count("true"); n != 4 {
		t.Errorf("%d rows, want the stored one, the kept one and the 2 of the second batch", n)
	}
}

func TestEnqueueManyValidatesEveryDraftFirst(t *testing.T) {
	f := newFixture(t)
	bad := draft(`{"a":`)
	_, err := f.store.EnqueueMany(f.ctx, []outbox.Draft{draft(`1`), draft(`2`), bad})
	var verr *outbox.ValidationError
	if !errors.As(err, &verr) || verr.Field != "payload" || !strings.Contains(err.Error(), "draft 2") {
		t.Fatalf("err = %v", err)
	}
	if n := f.count("true"); n != 0 {
		t.Fatalf("%d rows written before validation failed", n)
	}
	if _, err := f.store.EnqueueMany(f.ctx, make([]outbox.Draft, outbox.MaxBatch+1)); !errors.Is(err, outbox.ErrValidation) {
		t.Errorf("oversized batch: %v", err)
	}
	if res, err := f.store.EnqueueMany(f.ctx, nil); err != nil || len(res) != 0 {
		t.Errorf("empty batch: %v %v", res, err)
	}
}

func TestAckManyReportsWhatWasHeld(t *testing.T) {
	f := newFixture(t)
	for range 5 {
		f.enqueue(f.store, draft(`{}`))
	}
	got := f.claim(f.store, claimReq(5, time.Minute, "c"))
	if ok, err := f.store.Ack(f.ctx, got[4].ID, got[4].ClaimToken); err != nil || !ok {
		t.Fatal(ok, err)
	}
	receipts := []outbox.Receipt{
		got[0].Receipt(),
		{ID: got[1].ID, ClaimToken: got[2].ClaimToken}, // wrong token
		got[2].Receipt(),
		{ID: "nope", ClaimToken: "nope"},
		got[4].Receipt(), // already acked
		got[0].Receipt(), // repeated
	}
	ok, err := f.store.AckMany(f.ctx, receipts)
	if err != nil {
		t.Fatal(err)
	}
	want := []bool{true, false, true, false, false, true}
	for i := range want {
		if ok[i] != want[i] {
			t.Errorf("ok[%d] = %v, want %v", i, ok[i], want[i])
		}
	}
	if n := f.count("status = 'delivered'"); n != 3 {
		t.Errorf("%d delivered, want 3", n)
	}
	if m := f.get(f.store, got[1].ID); m.Status != outbox.StatusClaimed {
		t.Errorf("wrong token acked message %s", m.ID)
	}
	_, err = f.store.AckMany(f.ctx, []outbox.Receipt{got[3].Receipt(), {ID: got[3].ID}})
	var verr *outbox.ValidationError
	if !errors.As(err, &verr) || verr.Field != "receipts[1].claim_token" {
		t.Errorf("blank token in a batch: %v", err)
	}
}

func TestExtendLeaseKeepsTheClaim(t *testing.T) {
	c := newClock()
	f := newFixture(t, outbox.WithClock(c.Now))
	m := f.enqueue(f.store, draft(`{}`))
	got := f.claim(f.store, claimReq(1, 10*time.Second, "slow"))
	c.Advance(9 * time.Second)
	if ok, err := f.store.ExtendLease(f.ctx, m.ID, got[0].ClaimToken, 10*time.Second); err != nil || !ok {
		t.Fatalf("extend: %v %v", ok, err)
	}
	if l := f.get(f.store, m.ID).LeaseExpiresAt; !l.Equal(c.Now().Add(10 * time.Second)) {
		t.Errorf("lease %v, want %v", l, c.Now().Add(10*time.Second))
	}
	c.Advance(9 * time.Second) // past the first lease, inside the extended one
	if stolen := f.claim(f.store, claimReq(1, time.Minute, "thief")); len(stolen) != 0 {
		t.Fatal("extended lease stolen")
	}
	c.Advance(2 * time.Second)
	taken := f.claim(f.store, claimReq(1, time.Minute, "next"))
	if len(taken) != 1 {
		t.Fatal("expired extended lease not reclaimed")
	}
	if ok, err := f.store.ExtendLease(f.ctx, m.ID, got[0].ClaimToken, 10*time.Second); err != nil || ok {
		t.Errorf("old holder extended a lost claim: %v %v", ok, err)
	}
	if _, err := f.store.ExtendLease(f.ctx, m.ID, taken[0].ClaimToken, 0); !errors.Is(err, outbox.ErrValidation) {
		t.Errorf("zero lease: %v", err)
	}
	ok, err := f.store.ExtendLeases(f.ctx, []outbox.Receipt{taken[0].Receipt(), got[0].Receipt()}, time.Minute)
	if err != nil || !ok[0] || ok[1] {
		t.Errorf("batch extend: %v %v", ok, err)
	}
}

func TestDeadLetterIsImmediateAndFenced(t *testing.T) {
	f := newFixture(t)
	m := f.enqueue(f.store, draft(`{}`))
	got := f.claim(f.store, claimReq(1, time.Minute, "c"))
	if ok, err := f.store.DeadLetter(f.ctx, m.ID, "00000000-0000-4000-8000-000000000000", "nope"); err != nil || ok {
		t.Fatalf("dead-letter with a wrong token: %v %v", ok, err)
	}
	if ok, err := f.store.DeadLetter(f.ctx, m.ID, got[0].ClaimToken, "400: schema mismatch\x00"); err != nil || !ok {
		t.Fatalf("dead-letter: %v %v", ok, err)
	}
	d := f.get(f.store, m.ID)
	if d.Status != outbox.StatusDeadLetter || d.LastError != "400: schema mismatch" || d.AttemptCount != 1 || d.ClaimToken != "" {
		t.Fatalf("dead letter %+v", d)
	}
}
