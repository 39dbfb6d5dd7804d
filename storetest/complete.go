package storetest

import (
	"testing"
	"time"

	"github.com/pgoutbox/pgoutbox/outbox"
)

// TestAckAndAckMany checks that only the holder of the current token acks, singly or in a batch.
func TestAckAndAckMany(t *testing.T, h Harness) {
	e := start(t, h)
	for range 3 {
		e.enqueue(e.s, draft(`{}`))
	}
	got := e.claim(e.s, req(3, time.Minute))
	if ok, err := e.s.Ack(e.ctx, got[0].ID, got[0].ClaimToken); err != nil || !ok {
		e.Fatal(ok, err)
	}
	if d := e.get(got[0].ID); d.Status != outbox.StatusDelivered || d.ClaimToken != "" || !d.LeaseExpiresAt.IsZero() {
		e.Errorf("delivered %+v", d)
	}
	ok, err := e.s.AckMany(e.ctx, []outbox.Receipt{got[0].Receipt(), got[1].Receipt(), {ID: got[2].ID, ClaimToken: got[1].ClaimToken}, {ID: "x", ClaimToken: "y"}})
	if err != nil || ok[0] || !ok[1] || ok[2] || ok[3] {
		e.Errorf("ack many: %v %v", ok, err)
	}
	_, err = e.s.Ack(e.ctx, "", "t")
	wantField(e.T, err, "id")
}

// TestNackRequeueThenDeadLetter checks that a nack requeues at the retry time until attempts run out, then dead-letters; reasons are cleaned.
func TestNackRequeueThenDeadLetter(t *testing.T, h Harness) {
	e := start(t, h)
	d := draft(`{}`)
	d.MaxAttempts = 2
	m := e.enqueue(e.s, d)
	got := e.claim(e.s, req(1, time.Minute))
	retry := e.clk.Now().Add(time.Hour)
	if out, err := e.s.Nack(e.ctx, m.ID, got[0].ClaimToken, "bad\x00 gateway", retry); err != nil || out != outbox.NackRequeued {
		e.Fatal(out, err)
	}
	if p := e.get(m.ID); p.Status != outbox.StatusPending || !p.AvailableAt.Equal(retry) || p.LastError != "bad gateway" {
		e.Errorf("requeued %+v", p)
	}
	e.clk.advance(time.Hour)
	got = e.claim(e.s, req(1, time.Minute))
	if out, err := e.s.NackAfter(e.ctx, m.ID, got[0].ClaimToken, "again", time.Minute); err != nil || out != outbox.NackDeadLettered {
		e.Fatal(out, err)
	}
	if p := e.get(m.ID); p.Status != outbox.StatusDeadLetter || p.LastError != "again" {
		e.Errorf("dead %+v", p)
	}
}

// TestNackAfterAndDeadLetter checks that NackAfter delays on the store's clock, and DeadLetter ends a message at once.
func TestNackAfterAndDeadLetter(t *testing.T, h Harness) {
	e := start(t, h)
	a := e.enqueue(e.s, draft(`1`))
	b := e.enqueue(e.s, draft(`2`))
	got := e.claim(e.s, req(2, time.Minute))
	if out, err := e.s.NackAfter(e.ctx, a.ID, got[0].ClaimToken, "later", 90*time.Second); err != nil || out != outbox.NackRequeued {
		e.Fatal(out, err)
	}
	if p := e.get(a.ID); !p.AvailableAt.Equal(e.clk.Now().Add(90 * time.Second)) {
		e.Errorf("available %v", p.AvailableAt)
	}
	if ok, err := e.s.DeadLetter(e.ctx, b.ID, got[1].ClaimToken, "permanent"); err != nil || !ok {
		e.Fatal(ok, err)
	}
	if p := e.get(b.ID); p.Status != outbox.StatusDeadLetter || p.AttemptCount != 1 {
		e.Errorf("dead %+v", p)
	}
	_, err := e.s.NackAfter(e.ctx, a.ID, "t", "x", -time.Second)
	wantField(e.T, err, "delay")
}

// TestExtendLease checks that a heartbeat moves the lease, so the message is not claimed again.
func TestExtendLease(t *testing.T, h Harness) {
	e := start(t, h)
	m := e.enqueue(e.s, draft(`{}`))
	got := e.claim(e.s, req(1, 10*time.Second))
	e.clk.advance(9 * time.Second)
	ok, err := e.s.ExtendLeases(e.ctx, []outbox.Receipt{got[0].Receipt()}, 10*time.Second)
	if err != nil || !ok[0] {
		e.Fatal(ok, err)
	}
	e.clk.advance(9 * time.Second)
	if stolen := e.claim(e.s, req(1, time.Second)); len(stolen) != 0 {
		e.Fatal("extended lease stolen")
	}
	if l := e.get(m.ID).LeaseExpiresAt; !l.Equal(e.clk.Now().Add(time.Second)) {
		e.Errorf("lease %v", l)
	}
}

// TestEachReceiptIsJudgedOnItsOwn checks that a batch holding a stale and
// the current receipt of one message acks (or extends) it with the current
// one, and reports the stale one as not held, and that two receipts with
// their tokens swapped hold nothing, in AckMany, ExtendLeases and
// ClaimAndAck alike.
func TestEachReceiptIsJudgedOnItsOwn(t *testing.T, h Harness) {
	e := start(t, h)
	for _, call := range []struct {
		name string
		do   func(rs []outbox.Receipt) ([]bool, error)
		want outbox.Status
	}{
		{"AckMany", func(rs []outbox.Receipt) ([]bool, error) { return e.s.AckMany(e.ctx, rs) }, outbox.StatusDelivered},
		{"ExtendLeases", func(rs []outbox.Receipt) ([]bool, error) { return e.s.ExtendLeases(e.ctx, rs, time.Minute) }, outbox.StatusClaimed},
		{"ClaimAndAck", func(rs []outbox.Receipt) ([]bool, error) {
			_, ok, err := e.s.ClaimAndAck(e.ctx, req(1, time.Minute), rs)
			return ok, err
		}, outbox.StatusDelivered},
	} {
		m := e.enqueue(e.s, draft(`{}`))
		old := e.claim(e.s, req(1, time.Second))[0]
		e.clk.advance(2 * time.Second)
		cur := e.claim(e.s, req(1, time.Minute))[0]
		if cur.ID != m.ID || old.ID != m.ID {
			e.Fatalf("%s: claims %s and %s, want %s twice", call.name, old.ID, cur.ID, m.ID)
		}
		ok, err := call.do([]outbox.Receipt{old.Receipt(), cur.Receipt()})
		if err != nil || len(ok) != 2 || ok[0] || !ok[1] {
			e.Errorf("%s([stale, current]) = %v, %v; want [false true]", call.name, ok, err)
		}
		if st := e.get(m.ID).Status; st != call.want {
			e.Errorf("%s: message is %s, want %s", call.name, st, call.want)
		}
		if call.want == outbox.StatusClaimed {
			if ok, err := e.s.Ack(e.ctx, cur.ID, cur.ClaimToken); err != nil || !ok {
				e.Fatalf("%s: clean-up ack: %v %v", call.name, ok, err)
			}
		}

		// Two held messages with their tokens swapped: each token is
		// current, but not for the id it came with. Nothing is held.
		e.enqueue(e.s, draft(`{}`))
		e.enqueue(e.s, draft(`{}`))
		both := e.claim(e.s, req(2, time.Minute))
		if len(both) != 2 {
			e.Fatalf("%s: claimed %d messages, want 2", call.name, len(both))
		}
		a, b := both[0], both[1]
		ok, err = call.do([]outbox.Receipt{{ID: a.ID, ClaimToken: b.ClaimToken}, {ID: b.ID, ClaimToken: a.ClaimToken}})
		if err != nil || len(ok) != 2 || ok[0] || ok[1] {
			e.Errorf("%s(swapped tokens) = %v, %v; want [false false]", call.name, ok, err)
		}
		for _, m := range both {
			if st := e.get(m.ID).Status; st != outbox.StatusClaimed {
				e.Errorf("%s(swapped tokens): message %s is %s, want claimed", call.name, m.ID, st)
			}
			if ok, err := e.s.Ack(e.ctx, m.ID, m.ClaimToken); err != nil || !ok {
				e.Fatalf("%s: clean-up ack: %v %v", call.name, ok, err)
			}
		}
	}
}

// TestNextDue checks that the store says how long until its next scheduled
// message falls due, and nothing when none is scheduled.
func TestNextDue(t *testing.T, h Harness) {
	e := start(t, h)
	if _, ok, err := e.s.NextDue(e.ctx, lane, target); err != nil || ok {
		e.Fatalf("empty store: %v %v", ok, err)
	}
	now := draft(`1`)
	later := draft(`2`)
	later.AvailableAt = e.clk.Now().Add(300 * time.Millisecond)
	latest := draft(`3`)
	latest.AvailableAt = e.clk.Now().Add(time.Hour)
	for _, d := range []outbox.Draft{now, latest, later} {
		e.enqueue(e.s, d)
	}
	if d, ok, err := e.s.NextDue(e.ctx, lane, target); err != nil || !ok || d != 300*time.Millisecond {
		e.Errorf("NextDue = %s %v %v, want 300ms", d, ok, err)
	}
	if _, ok, _ := e.s.NextDue(e.ctx, lane, "elsewhere"); ok {
		e.Error("another target has nothing scheduled")
	}
}
