package integration

import (
	"errors"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pgoutbox/pgoutbox/outbox"
)

func TestClaimOrderAndFields(t *testing.T) {
	c := newClock()
	f := newFixture(t, outbox.WithClock(c.Now))
	t0 := c.Now()
	at := func(d time.Duration, payload string) outbox.Draft {
		dr := draft(payload)
		dr.AvailableAt = t0.Add(d)
		return dr
	}
	late := f.enqueue(f.store, at(2*time.Second, `"late"`))
	first := f.enqueue(f.store, at(0, `"first"`))
	second := f.enqueue(f.store, at(0, `"second"`)) // same time, enqueued later
	future := f.enqueue(f.store, at(time.Hour, `"future"`))
	c.Advance(5 * time.Second)

	got := f.claim(f.store, claimReq(10, 30*time.Second, "relay-1"))
	wantOrder := []string{first.ID, second.ID, late.ID}
	if len(got) != len(wantOrder) {
		t.Fatalf("claimed %d messages, want %d", len(got), len(wantOrder))
	}
	tokens := map[string]bool{}
	for i, m := range got {
		if m.ID != wantOrder[i] {
			t.Errorf("claim[%d] = %s, want %s", i, m.ID, wantOrder[i])
		}
		if m.Status != outbox.StatusClaimed || m.AttemptCount != 1 || m.ClaimedBy != "relay-1" {
			t.Errorf("claim[%d] fields %+v", i, m)
		}
		if !m.LeaseExpiresAt.Equal(c.Now().Add(30*time.Second)) || !m.UpdatedAt.Equal(c.Now()) {
			t.Errorf("claim[%d] lease %v updated %v, now %v", i, m.LeaseExpiresAt, m.UpdatedAt, c.Now())
		}
		if len(m.ClaimToken) != 36 || tokens[m.ClaimToken] {
			t.Errorf("claim[%d] token %q not fresh", i, m.ClaimToken)
		}
		tokens[m.ClaimToken] = true
		if stored := f.get(f.store, m.ID); !messagesEqual(stored, m) {
			t.Errorf("stored %+v\nclaimed %+v", stored, m)
		}
	}
	if m := f.get(f.store, future.ID); m.Status != outbox.StatusPending {
		t.Errorf("future message claimed: %+v", m)
	}
}

func TestClaimRespectsLimitLaneAndTarget(t *testing.T) {
	f := newFixture(t)
	for range 5 {
		f.enqueue(f.store, draft(`1`))
	}
	other := draft(`2`)
	other.Target = outbox.TargetA2AWebhook
	otherMsg := f.enqueue(f.store, other)
	otherLane := draft(`3`)
	otherLane.Lane = outbox.LaneProtocolReplay
	f.enqueue(f.store, otherLane)

	if got := f.claim(f.store, claimReq(3, time.Minute, "c")); len(got) != 3 {
		t.Fatalf("limit 3 claimed %d", len(got))
	}
	if got := f.claim(f.store, claimReq(10, time.Minute, "c")); len(got) != 2 {
		t.Fatalf("second claim got %d, want the 2 left", len(got))
	}
	if got := f.claim(f.store, claimReq(10, time.Minute, "c")); len(got) != 0 {
		t.Fatalf("third claim got %d, want none", len(got))
	}
	r := claimReq(10, time.Minute, "c")
	r.Target = outbox.TargetA2AWebhook
	got := f.claim(f.store, r)
	if len(got) != 1 || got[0].ID != otherMsg.ID {
		t.Fatalf("claim of the other target got %+v", got)
	}
}

func TestClaimRejectsInvalidRequests(t *testing.T) {
	f := newFixture(t)
	f.enqueue(f.store, draft(`1`))
	before := f.snapshot()
	cases := []struct {
		name  string
		edit  func(*outbox.ClaimRequest)
		field string
	}{
		{"blank lane", func(r *outbox.ClaimRequest) { r.Lane = " " }, "lane"},
		{"empty target", func(r *outbox.ClaimRequest) { r.Target = "" }, "target"},
		{"target with NUL", func(r *outbox.ClaimRequest) { r.Target = "a\x00" }, "target"},
		{"empty consumer", func(r *outbox.ClaimRequest) { r.ConsumerID = "" }, "consumer_id"},
		{"blank consumer", func(r *outbox.ClaimRequest) { r.ConsumerID = "\t" }, "consumer_id"},
		{"consumer too long", func(r *outbox.ClaimRequest) { r.ConsumerID = strings.Repeat("c", 256) }, "consumer_id"},
		{"zero limit", func(r *outbox.ClaimRequest) { r.Limit = 0 }, "limit"},
		{"negative limit", func(r *outbox.ClaimRequest) { r.Limit = -5 }, "limit"},
		{"absurd limit", func(r *outbox.ClaimRequest) { r.Limit = 1 << 30 }, "limit"},
		{"zero lease", func(r *outbox.ClaimRequest) { r.Lease = 0 }, "lease"},
		{"negative lease", func(r *outbox.ClaimRequest) { r.Lease = -time.Second }, "lease"},
		{"sub-millisecond lease", func(r *outbox.ClaimRequest) { r.Lease = time.Microsecond }, "lease"},
		{"absurd lease", func(r *outbox.ClaimRequest) { r.Lease = 1000 * time.Hour }, "lease"},
	}
	for _, c := range cases {
		r := claimReq(10, time.Minute, "consumer")
		c.edit(&r)
		_, err := f.store.Claim(f.ctx, r)
		var verr *outbox.ValidationError
		if !errors.Is(err, outbox.ErrValidation) || !errors.As(err, &verr) || verr.Field != c.field {
			t.Errorf("%s: err = %v, want ErrValidation on %s", c.name, err, c.field)
		}
	}
	if after := f.snapshot(); after != before {
		t.Errorf("a refused claim changed the table")
	}
}

// A live lease is never stolen; an expired one is, and the old holder's token
// no longer acks or nacks.
func TestExpiredLeaseIsReclaimedAndOldTokenFenced(t *testing.T) {
	c := newClock()
	f := newFixture(t, outbox.WithClock(c.Now))
	m := f.enqueue(f.store, draft(`{}`))
	a := f.claim(f.store, claimReq(1, 30*time.Second, "a"))
	if len(a) != 1 {
		t.Fatal("first claim got nothing")
	}
	c.Advance(30*time.Second - time.Microsecond)
	if got := f.claim(f.store, claimReq(1, 30*time.Second, "b")); len(got) != 0 {
		t.Fatalf("live lease stolen: %+v", got)
	}
	c.Advance(time.Microsecond) // the lease ends now
	b := f.claim(f.store, claimReq(1, 30*time.Second, "b"))
	if len(b) != 1 || b[0].ID != m.ID || b[0].ClaimedBy != "b" || b[0].AttemptCount != 2 || b[0].ClaimToken == a[0].ClaimToken {
		t.Fatalf("reclaim got %+v", b)
	}
	if ok, err := f.store.Ack(f.ctx, m.ID, a[0].ClaimToken); err != nil || ok {
		t.Errorf("old token acked: %v %v", ok, err)
	}
	if out, err := f.store.Nack(f.ctx, m.ID, a[0].ClaimToken, "late", time.Time{}); err != nil || out != outbox.NackLostClaim {
		t.Errorf("old token nacked: %v %v", out, err)
	}
	if got := f.get(f.store, m.ID); got.Status != outbox.StatusClaimed || got.ClaimToken != b[0].ClaimToken {
		t.Errorf("old token changed the message: %+v", got)
	}
	if ok, err := f.store.Ack(f.ctx, m.ID, b[0].ClaimToken); err != nil || !ok {
		t.Errorf("new holder's ack: %v %v", ok, err)
	}
}

// A message whose lease expires after its last attempt is a poison message
// (it keeps killing its consumer): the next claim dead-letters it instead of
// handing it out again, and still returns the healthy messages.
func TestPoisonMessageIsDeadLetteredOnLeaseExpiry(t *testing.T) {
	c := newClock()
	f := newFixture(t, outbox.WithClock(c.Now))
	poison := draft(`"poison"`)
	poison.MaxAttempts = 2
	p := f.enqueue(f.store, poison)
	for attempt := 1; attempt <= 2; attempt++ {
		got := f.claim(f.store, claimReq(1, 10*time.Second, "doomed"))
		if len(got) != 1 || got[0].ID != p.ID || got[0].AttemptCount != attempt {
			t.Fatalf("attempt %d: claimed %+v", attempt, got)
		}
		c.Advance(11 * time.Second) // the consumer dies; the lease runs out
	}
	healthy := f.enqueue(f.store, draft(`"healthy"`))
	got := f.claim(f.store, claimReq(10, 10*time.Second, "next"))
	if len(got) != 1 || got[0].ID != healthy.ID {
		t.Fatalf("claim after poison got %+v, want only the healthy message", got)
	}
	dead := f.get(f.store, p.ID)
	if dead.Status != outbox.StatusDeadLetter || dead.LastError != "lease expired after 2 attempts" ||
		dead.ClaimToken != "" || dead.ClaimedBy != "" || !dead.LeaseExpiresAt.IsZero() || dead.AttemptCount != 2 {
		t.Fatalf("poison message %+v", dead)
	}
	c.Advance(time.Hour)
	for _, m := range f.claim(f.store, claimReq(10, 10*time.Second, "later")) {
		if m.ID == p.ID {
			t.Fatal("dead letter handed out again")
		}
	}
}

// Expired leases and pending messages are handed out together, oldest
// available first.
func TestClaimMergesExpiredAndPendingInAvailabilityOrder(t *testing.T) {
	c := newClock()
	f := newFixture(t, outbox.WithClock(c.Now))
	old := f.enqueue(f.store, draft(`"old"`))
	c.Advance(time.Second)
	f.claim(f.store, claimReq(1, 5*time.Second, "dies"))
	newer := f.enqueue(f.store, draft(`"newer"`))
	c.Advance(10 * time.Second)
	got := f.claim(f.store, claimReq(1, 5*time.Second, "next"))
	if len(got) != 1 || got[0].ID != old.ID {
		t.Fatalf("got %+v, want the expired older message first", got)
	}
	got = f.claim(f.store, claimReq(5, 5*time.Second, "next"))
	if len(got) != 1 || got[0].ID != newer.ID {
		t.Fatalf("got %+v, want the newer pending message", got)
	}
}

// Eight consumers drain 600 messages at once: every message has exactly one
// owner, is acked once, and none is left behind.
func TestConcurrentConsumersEachMessageOneOwner(t *testing.T) {
	f := newFixture(t)
	const total, consumers = 600, 8
	ids := make(map[string]bool, total)
	for i := range total {
		m := f.enqueue(f.store, draft(`{"n":`+itoa(i)+`}`))
		ids[m.ID] = true
	}
	var (
		mu    sync.Mutex
		owner = map[string]string{}
		errs  []error
		dups  []string
		wg    sync.WaitGroup
		start = make(chan struct{})
		acked = map[string]int{}
	)
	for i := range consumers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := "consumer-" + itoa(i)
			rng := rand.New(rand.NewPCG(uint64(i), 7))
			<-start
			for empty := 0; empty < 3; {
				got, err := f.store.Claim(f.ctx, claimReq(1+rng.IntN(20), time.Hour, name))
				if err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
					return
				}
				if len(got) == 0 {
					empty++
					continue
				}
				empty = 0
				for _, m := range got {
					mu.Lock()
					if prev, taken := owner[m.ID]; taken {
						dups = append(dups, m.ID+" by "+prev+" and "+name)
					}
					owner[m.ID] = name
					mu.Unlock()
					ok, err := f.store.Ack(f.ctx, m.ID, m.ClaimToken)
					mu.Lock()
					if err != nil || !ok {
						errs = append(errs, errors.New("ack "+m.ID+" failed"))
					}
					acked[m.ID]++
					mu.Unlock()
				}
			}
		}()
	}
	close(start)
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("errors: %v", errs)
	}
	if len(dups) > 0 {
		t.Fatalf("messages claimed twice under a live lease: %v", dups)
	}
	for id := range ids {
		if acked[id] != 1 {
			t.Errorf("message %s acked %d times", id, acked[id])
		}
	}
	if n := f.count("status = 'delivered'"); n != total {
		t.Errorf("%d delivered, want %d", n, total)
	}
	owners := map[string]bool{}
	for _, o := range owner {
		owners[o] = true
	}
	t.Logf("%d messages spread over %d consumers", len(owner), len(owners))
}

// After a consumer dies holding many messages, several consumers reclaim its
// expired leases at once: each message goes to exactly one of them.
func TestConcurrentReclaimOfExpiredLeasesOneOwner(t *testing.T) {
	c := newClock()
	f := newFixture(t, outbox.WithClock(c.Now))
	const total, consumers = 300, 8
	for i := range total {
		f.enqueue(f.store, draft(itoa(i)))
	}
	if got := f.claim(f.store, claimReq(total, time.Second, "dies")); len(got) != total {
		t.Fatalf("first claim got %d", len(got))
	}
	c.Advance(time.Minute)
	var (
		mu    sync.Mutex
		owner = map[string]string{}
		dups  []string
		errs  []error
		wg    sync.WaitGroup
		start = make(chan struct{})
	)
	for i := range consumers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := "rescuer-" + itoa(i)
			<-start
			for {
				got, err := f.store.Claim(f.ctx, claimReq(7, time.Hour, name))
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
				}
				for _, m := range got {
					if prev, taken := owner[m.ID]; taken {
						dups = append(dups, m.ID+" by "+prev+" and "+name)
					}
					owner[m.ID] = name
				}
				mu.Unlock()
				if err != nil || len(got) == 0 {
					return
				}
			}
		}()
	}
	close(start)
	wg.Wait()
	if len(errs) > 0 || len(dups) > 0 {
		t.Fatalf("errors %v; reclaimed twice: %v", errs, dups)
	}
	if len(owner) != total {
		t.Fatalf("reclaimed %d of %d", len(owner), total)
	}
	if n := f.count("status = 'claimed' AND attempt_count = 2 AND claimed_by LIKE 'rescuer-%'"); n != total {
		t.Fatalf("%d messages held by rescuers on their second attempt, want %d", n, total)
	}
}

// While a relay drains a backlog, claims start where the last full batch
// ended (past the dead index entries of what was claimed). A message that
// becomes due behind that point is still found: by the full scan that runs
// once the backlog is drained, and at least once a second while it lasts.
func TestClaimCursorFindsMessagesBehindIt(t *testing.T) {
	f := newFixture(t)
	const batch = 40 // cursors serve claims of 32 or more
	for i := range 4 * batch {
		f.enqueue(f.store, draft(itoa(i)))
	}
	late := draft(`"late"`)
	late.AvailableAt = time.Now().Add(-time.Hour) // due long ago, committed now
	seen := map[string]int{}
	claimAll := func(n int) []outbox.Message {
		got := f.claim(f.store, claimReq(n, time.Hour, "c"))
		for _, m := range got {
			seen[m.ID]++
		}
		return got
	}
	claimAll(batch) // full batch: the next claim starts after it
	straggler := f.enqueue(f.store, late)
	if got := claimAll(batch); len(got) != batch || got[0].ID == straggler.ID {
		t.Fatalf("cursor claim: %d messages, first %s", len(got), got[0].ID)
	}
	// A second later the next claim scans from the start: the straggler,
	// the oldest, comes first.
	time.Sleep(1100 * time.Millisecond)
	if got := claimAll(batch); len(got) != batch || got[0].ID != straggler.ID {
		t.Fatalf("rescan did not find the message behind the cursor first: %+v", got[0])
	}
	another := f.enqueue(f.store, late)
	claimAll(batch)
	// The backlog runs out: the short cursor claim is topped up from the
	// start, which finds the other late message.
	rest := claimAll(batch)
	found := false
	for _, m := range rest {
		found = found || m.ID == another.ID
	}
	if !found {
		t.Fatalf("the drained backlog's last claim missed the message behind the cursor")
	}
	if len(seen) != 4*batch+2 {
		t.Fatalf("claimed %d distinct messages, want %d", len(seen), 4*batch+2)
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("message %s claimed %d times", id, n)
		}
	}
}

// Stragglers behind the cursor wait at most one rescan interval (a second)
// to be found, and then go out at the full claim rate, however many there
// are: a backlog of 1,600, claims of 40 every 100 ms, and 120 messages
// enqueued behind the cursor all come out within 1.3 s. (A cursor that went
// back to itself after each rescan let out 40 a second: at 1.0, 2.0 and
// 3.1 s.)
func TestClaimCursorDrainsStragglersAtFullRate(t *testing.T) {
	c := newClock()
	f := newFixture(t, outbox.WithClock(c.Now), outbox.WithNotify(false))
	const batch = 40
	f.fill(f.store, 1600, draft(`{}`))
	claim := func() []outbox.Message {
		got := f.claim(f.store, claimReq(batch, time.Hour, "c"))
		c.Advance(100 * time.Millisecond)
		return got
	}
	claim()
	claim() // the cursor now serves
	late := draft(`"late"`)
	late.AvailableAt = c.Now().Add(-time.Hour)
	stragglers := map[string]bool{}
	for range 120 {
		stragglers[f.enqueue(f.store, late).ID] = true
	}
	start := c.Now()
	for elapsed := time.Duration(0); len(stragglers) > 0; elapsed = c.Now().Sub(start) {
		if elapsed > 1300*time.Millisecond {
			t.Fatalf("%d of 120 stragglers still waiting after %s", len(stragglers), elapsed)
		}
		for _, m := range claim() {
			delete(stragglers, m.ID)
		}
	}
}
