package storetest

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/pgoutbox/pgoutbox/outbox"
)

// TestClaimOrderAndFields checks that claims hand out due messages oldest available first, with every claim field set.
func TestClaimOrderAndFields(t *testing.T, h Harness) {
	e := start(t, h)
	t0 := e.clk.Now()
	at := func(d time.Duration) outbox.Draft { x := draft(`{}`); x.AvailableAt = t0.Add(d); return x }
	late := e.enqueue(e.s, at(2*time.Second))
	first := e.enqueue(e.s, at(0))
	second := e.enqueue(e.s, at(0))
	e.enqueue(e.s, at(time.Hour))
	e.clk.advance(5 * time.Second)
	got := e.claim(e.s, req(10, 30*time.Second))
	want := []string{first.ID, second.ID, late.ID}
	if len(got) != 3 {
		e.Fatalf("claimed %d, want 3", len(got))
	}
	for i, m := range got {
		if m.ID != want[i] || m.Status != outbox.StatusClaimed || m.AttemptCount != 1 || m.ClaimedBy != "consumer" ||
			len(m.ClaimToken) != 36 || !m.LeaseExpiresAt.Equal(e.clk.Now().Add(30*time.Second)) {
			e.Errorf("claim[%d] = %+v, want id %s", i, m, want[i])
		}
	}
}

// TestClaimLimitLaneTargetAndValidation checks that a claim takes at most Limit messages of its lane and target, and refuses bad requests.
func TestClaimLimitLaneTargetAndValidation(t *testing.T, h Harness) {
	e := start(t, h)
	for range 3 {
		e.enqueue(e.s, draft(`1`))
	}
	other := draft(`2`)
	other.Target = "elsewhere"
	e.enqueue(e.s, other)
	if got := e.claim(e.s, req(2, time.Minute)); len(got) != 2 {
		e.Errorf("limit 2 claimed %d", len(got))
	}
	if got := e.claim(e.s, req(10, time.Minute)); len(got) != 1 {
		e.Errorf("claimed %d, want the 1 left of this target", len(got))
	}
	_, err := e.s.Claim(e.ctx, req(0, time.Minute))
	wantField(e.T, err, "limit")
	_, err = e.s.Claim(e.ctx, req(1, 0))
	wantField(e.T, err, "lease")
}

// TestLeaseFencing checks that a live lease is never stolen, an expired one is, and the old token then changes nothing.
func TestLeaseFencing(t *testing.T, h Harness) {
	e := start(t, h)
	m := e.enqueue(e.s, draft(`{}`))
	a := e.claim(e.s, req(1, 10*time.Second))
	e.clk.advance(10*time.Second - time.Microsecond)
	if got := e.claim(e.s, req(1, 10*time.Second)); len(got) != 0 {
		e.Fatal("live lease stolen")
	}
	e.clk.advance(time.Microsecond)
	b := e.claim(e.s, req(1, 10*time.Second))
	if len(b) != 1 || b[0].AttemptCount != 2 || b[0].ClaimToken == a[0].ClaimToken {
		e.Fatalf("reclaim: %+v", b)
	}
	if ok, err := e.s.Ack(e.ctx, m.ID, a[0].ClaimToken); err != nil || ok {
		e.Errorf("stale ack: %v %v", ok, err)
	}
	if out, err := e.s.Nack(e.ctx, m.ID, a[0].ClaimToken, "x", time.Time{}); err != nil || out != outbox.NackLostClaim {
		e.Errorf("stale nack: %v %v", out, err)
	}
	if ok, err := e.s.ExtendLease(e.ctx, m.ID, a[0].ClaimToken, time.Minute); err != nil || ok {
		e.Errorf("stale extend: %v %v", ok, err)
	}
	if ok, err := e.s.Ack(e.ctx, m.ID, b[0].ClaimToken); err != nil || !ok {
		e.Errorf("holder's ack: %v %v", ok, err)
	}
}

// TestPoisonMessageDeadLettered checks that a message whose lease expired after its last attempt is dead-lettered by the next claim.
func TestPoisonMessageDeadLettered(t *testing.T, h Harness) {
	e := start(t, h)
	d := draft(`{}`)
	d.MaxAttempts = 1
	p := e.enqueue(e.s, d)
	e.claim(e.s, req(1, time.Second))
	e.clk.advance(2 * time.Second)
	healthy := e.enqueue(e.s, draft(`1`))
	got := e.claim(e.s, req(5, time.Second))
	if len(got) != 1 || got[0].ID != healthy.ID {
		e.Fatalf("claimed %+v", got)
	}
	if dead := e.get(p.ID); dead.Status != outbox.StatusDeadLetter || dead.LastError != "lease expired after 1 attempts" {
		e.Errorf("poison %+v", dead)
	}
}

// TestConcurrentClaimsHaveOneOwner checks that concurrent claimers never receive the same message.
func TestConcurrentClaimsHaveOneOwner(t *testing.T, h Harness) {
	e := start(t, h)
	const total = 200
	drafts := make([]outbox.Draft, total)
	for i := range drafts {
		drafts[i] = draft(fmt.Sprint(i))
	}
	if _, err := e.s.EnqueueMany(e.ctx, drafts); err != nil {
		e.Fatal(err)
	}
	var (
		mu    sync.Mutex
		owner = map[string]int{}
		wg    sync.WaitGroup
	)
	for c := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				got, err := e.s.Claim(e.ctx, outbox.ClaimRequest{Lane: lane, Target: target, Limit: 7, Lease: time.Hour, ConsumerID: fmt.Sprint("c", c)})
				if err != nil || len(got) == 0 {
					return
				}
				mu.Lock()
				for _, m := range got {
					owner[m.ID]++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(owner) != total {
		e.Errorf("%d of %d claimed", len(owner), total)
	}
	for id, n := range owner {
		if n != 1 {
			e.Errorf("message %s claimed %d times", id, n)
		}
	}
}

// TestClaimAndAckAcksAnExpiredHolder checks that a holder whose lease ran
// out may still ack through ClaimAndAck while nobody has claimed the message
// since, and that the same call does not hand the message straight back.
func TestClaimAndAckAcksAnExpiredHolder(t *testing.T, h Harness) {
	e := start(t, h)
	m := e.enqueue(e.s, draft(`{}`))
	got := e.claim(e.s, req(1, time.Second))
	e.clk.advance(2 * time.Second)
	claimed, acked, err := e.s.ClaimAndAck(e.ctx, req(10, time.Second), []outbox.Receipt{got[0].Receipt()})
	if err != nil {
		e.Fatal(err)
	}
	if len(acked) != 1 || !acked[0] {
		e.Errorf("acked = %v, want [true]", acked)
	}
	if len(claimed) != 0 {
		e.Errorf("the acked message was handed out again: %+v", claimed)
	}
	if back := e.get(m.ID); back.Status != outbox.StatusDelivered || back.AttemptCount != 1 {
		e.Errorf("after the ack: %+v", back)
	}
}
