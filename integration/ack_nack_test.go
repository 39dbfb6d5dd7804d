package integration

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pgoutbox/pgoutbox/outbox"
)

func TestAckByHolderDeliversAndClearsClaim(t *testing.T) {
	c := newClock()
	f := newFixture(t, outbox.WithClock(c.Now))
	m := f.enqueue(f.store, draft(`{}`))
	got := f.claim(f.store, claimReq(1, time.Minute, "c"))
	c.Advance(time.Second)
	ok, err := f.store.Ack(f.ctx, m.ID, got[0].ClaimToken)
	if err != nil || !ok {
		t.Fatalf("ack: %v %v", ok, err)
	}
	d := f.get(f.store, m.ID)
	if d.Status != outbox.StatusDelivered || d.ClaimToken != "" || d.ClaimedBy != "" || !d.LeaseExpiresAt.IsZero() ||
		d.AttemptCount != 1 || !d.UpdatedAt.Equal(c.Now()) {
		t.Errorf("delivered message %+v", d)
	}
	if ok, err := f.store.Ack(f.ctx, m.ID, got[0].ClaimToken); err != nil || ok {
		t.Errorf("second ack: %v %v, want false", ok, err)
	}
}

func TestAckRefusesAnyoneButTheHolder(t *testing.T) {
	f := newFixture(t)
	pending := f.enqueue(f.store, draft(`1`))
	claimedMsg := f.enqueue(f.store, draft(`2`))
	// Claim only the second by making the first unavailable first.
	got := f.claim(f.store, claimReq(2, time.Minute, "c"))
	if len(got) != 2 {
		t.Fatal("claim")
	}
	// Put the first back to pending so it is unclaimed.
	if out, err := f.store.Nack(f.ctx, got[0].ID, got[0].ClaimToken, "x", time.Time{}); err != nil || out != outbox.NackRequeued {
		t.Fatal(out, err)
	}
	held := got[1]
	before := f.snapshot()
	cases := []struct{ name, id, token string }{
		{"another token", held.ID, "00000000-0000-4000-8000-000000000000"},
		{"token of another message", held.ID, got[0].ClaimToken},
		{"pending message", pending.ID, got[0].ClaimToken},
		{"unknown id", "999999", held.ClaimToken},
		{"id that cannot exist", "not-an-id", held.ClaimToken},
		{"token that cannot exist", held.ID, "not-a-token"},
		{"token in another form", held.ID, strings.ReplaceAll(held.ClaimToken, "-", "")},
	}
	for _, c := range cases {
		if ok, err := f.store.Ack(f.ctx, c.id, c.token); err != nil || ok {
			t.Errorf("ack with %s: %v %v, want false", c.name, ok, err)
		}
		if out, err := f.store.Nack(f.ctx, c.id, c.token, "r", time.Time{}); err != nil || out != outbox.NackLostClaim {
			t.Errorf("nack with %s: %v %v, want lost claim", c.name, out, err)
		}
	}
	if after := f.snapshot(); after != before {
		t.Error("a refused ack or nack changed the table")
	}
	if claimedMsg.ID != held.ID {
		t.Fatalf("test setup: held %s, expected %s", held.ID, claimedMsg.ID)
	}
}

func TestAckAndNackRejectBlankInputs(t *testing.T) {
	f := newFixture(t)
	for _, c := range []struct{ id, token, field string }{
		{"", "t", "id"}, {" ", "t", "id"}, {"1", "", "claim_token"}, {"1", "  ", "claim_token"},
	} {
		_, err := f.store.Ack(f.ctx, c.id, c.token)
		var verr *outbox.ValidationError
		if !errors.As(err, &verr) || verr.Field != c.field {
			t.Errorf("ack(%q, %q): %v, want invalid %s", c.id, c.token, err, c.field)
		}
		_, err = f.store.Nack(f.ctx, c.id, c.token, "", time.Time{})
		if !errors.As(err, &verr) || verr.Field != c.field {
			t.Errorf("nack(%q, %q): %v, want invalid %s", c.id, c.token, err, c.field)
		}
	}
}

// The holder of an expired lease may still ack while nobody has claimed the
// message since: the work is done, and a redelivery would be waste.
func TestAckAfterLeaseExpiryBeforeReclaim(t *testing.T) {
	c := newClock()
	f := newFixture(t, outbox.WithClock(c.Now))
	m := f.enqueue(f.store, draft(`{}`))
	got := f.claim(f.store, claimReq(1, time.Second, "slow"))
	c.Advance(time.Minute)
	if ok, err := f.store.Ack(f.ctx, m.ID, got[0].ClaimToken); err != nil || !ok {
		t.Fatalf("ack: %v %v", ok, err)
	}
}

func TestNackRequeuesAtRetryTime(t *testing.T) {
	c := newClock()
	f := newFixture(t, outbox.WithClock(c.Now))
	m := f.enqueue(f.store, draft(`{}`))
	got := f.claim(f.store, claimReq(1, time.Minute, "c"))
	retryAt := c.Now().Add(time.Hour)
	out, err := f.store.Nack(f.ctx, m.ID, got[0].ClaimToken, "target returned 503", retryAt)
	if err != nil || out != outbox.NackRequeued {
		t.Fatalf("nack: %v %v", out, err)
	}
	p := f.get(f.store, m.ID)
	if p.Status != outbox.StatusPending || !p.AvailableAt.Equal(retryAt) || p.LastError != "target returned 503" ||
		p.ClaimToken != "" || p.ClaimedBy != "" || !p.LeaseExpiresAt.IsZero() || p.AttemptCount != 1 {
		t.Fatalf("requeued message %+v", p)
	}
	c.Advance(time.Hour - time.Microsecond)
	if got := f.claim(f.store, claimReq(1, time.Minute, "c")); len(got) != 0 {
		t.Fatal("claimed before its retry time")
	}
	c.Advance(time.Microsecond)
	again := f.claim(f.store, claimReq(1, time.Minute, "c"))
	if len(again) != 1 || again[0].AttemptCount != 2 {
		t.Fatalf("claim at retry time: %+v", again)
	}
	// A zero retry time means now.
	if out, err := f.store.Nack(f.ctx, m.ID, again[0].ClaimToken, "again", time.Time{}); err != nil || out != outbox.NackRequeued {
		t.Fatalf("nack: %v %v", out, err)
	}
	if p := f.get(f.store, m.ID); !p.AvailableAt.Equal(c.Now()) {
		t.Errorf("zero retryAt gave available_at %v, want now %v", p.AvailableAt, c.Now())
	}
}

func TestNackDeadLettersWhenAttemptsRunOut(t *testing.T) {
	f := newFixture(t)
	d := draft(`{}`)
	d.MaxAttempts = 3
	m := f.enqueue(f.store, d)
	for attempt := 1; attempt <= 3; attempt++ {
		got := f.claim(f.store, claimReq(1, time.Minute, "c"))
		if len(got) != 1 || got[0].AttemptCount != attempt {
			t.Fatalf("attempt %d: claimed %+v", attempt, got)
		}
		out, err := f.store.Nack(f.ctx, m.ID, got[0].ClaimToken, "failure "+itoa(attempt), time.Time{})
		want := outbox.NackRequeued
		if attempt == 3 {
			want = outbox.NackDeadLettered
		}
		if err != nil || out != want {
			t.Fatalf("attempt %d: nack %v %v, want %v", attempt, out, err, want)
		}
	}
	dead := f.get(f.store, m.ID)
	if dead.Status != outbox.StatusDeadLetter || dead.LastError != "failure 3" || dead.ClaimToken != "" {
		t.Fatalf("dead letter %+v", dead)
	}
	if got := f.claim(f.store, claimReq(1, time.Minute, "c")); len(got) != 0 {
		t.Fatal("dead letter claimed")
	}
}

// A reason is cleaned, never a cause to fail: a consumer must always be able
// to give its message back.
func TestNackCleansReason(t *testing.T) {
	f := newFixture(t)
	cases := []struct{ reason, want string }{
		{"nul\x00byte", "nulbyte"},
		{"bad \xff utf8", "bad \uFFFD utf8"},
		{strings.Repeat("é", outbox.MaxErrorBytes), strings.Repeat("é", outbox.MaxErrorBytes/2)},
		{"", ""},
		{"'); DROP TABLE pgoutbox_message; --", "'); DROP TABLE pgoutbox_message; --"},
	}
	for _, c := range cases {
		m := f.enqueue(f.store, draft(`{}`))
		got := f.claim(f.store, claimReq(1, time.Minute, "c"))
		if out, err := f.store.Nack(f.ctx, m.ID, got[0].ClaimToken, c.reason, time.Now().Add(time.Hour)); err != nil || out != outbox.NackRequeued {
			t.Fatalf("nack(%q): %v %v", c.reason, out, err)
		}
		if stored := f.get(f.store, m.ID).LastError; stored != c.want {
			t.Errorf("reason %.20q stored as %.20q (%d bytes), want %.20q (%d bytes)", c.reason, stored, len(stored), c.want, len(c.want))
		}
	}
}

func TestNackRejectsRetryTimeOutOfRange(t *testing.T) {
	f := newFixture(t)
	m := f.enqueue(f.store, draft(`{}`))
	got := f.claim(f.store, claimReq(1, time.Minute, "c"))
	before := f.snapshot()
	_, err := f.store.Nack(f.ctx, m.ID, got[0].ClaimToken, "r", time.Date(12000, 1, 1, 0, 0, 0, 0, time.UTC))
	var verr *outbox.ValidationError
	if !errors.As(err, &verr) || verr.Field != "retry_at" {
		t.Fatalf("err = %v, want invalid retry_at", err)
	}
	if f.snapshot() != before {
		t.Error("a refused nack changed the table")
	}
}

// NackAfter measures the delay on the store's clock, not the caller's.
func TestNackAfterDelaysFromStoreClock(t *testing.T) {
	c := newClock()
	f := newFixture(t, outbox.WithClock(c.Now))
	m := f.enqueue(f.store, draft(`{}`))
	got := f.claim(f.store, claimReq(1, time.Minute, "c"))
	c.Advance(3 * time.Second)
	if out, err := f.store.NackAfter(f.ctx, m.ID, got[0].ClaimToken, "later", 90*time.Second); err != nil || out != outbox.NackRequeued {
		t.Fatalf("nack after: %v %v", out, err)
	}
	if p := f.get(f.store, m.ID); !p.AvailableAt.Equal(c.Now().Add(90 * time.Second)) {
		t.Errorf("available at %v, want %v", p.AvailableAt, c.Now().Add(90*time.Second))
	}
	for _, d := range []time.Duration{-time.Second, outbox.MaxRetryDelay + time.Second} {
		if _, err := f.store.NackAfter(f.ctx, m.ID, got[0].ClaimToken, "x", d); !errors.Is(err, outbox.ErrValidation) {
			t.Errorf("delay %v: %v", d, err)
		}
	}
}
