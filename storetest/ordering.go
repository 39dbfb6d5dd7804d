package storetest

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pgoutbox/pgoutbox/outbox"
)

func keyed(key, payload string) outbox.Draft {
	d := draft(payload)
	d.OrderingKey = key
	return d
}

// ids returns the ids of ms, in order.
func ids(ms []outbox.Message) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.ID
	}
	return out
}

func (e *env) ack(s Store, m outbox.Message) {
	e.Helper()
	if ok, err := s.Ack(e.ctx, m.ID, m.ClaimToken); err != nil || !ok {
		e.Fatalf("ack %s: %v %v", m.ID, ok, err)
	}
}

// TestOrderingOneHeadPerKey checks that a claim hands out only the head of
// each ordering key, in enqueue order, while unkeyed messages and other keys
// go on: a key's next message comes only once its head is acked.
func TestOrderingOneHeadPerKey(t *testing.T, h Harness) {
	e := start(t, h)
	k1 := e.enqueue(e.s, keyed("k", `1`))
	k2 := e.enqueue(e.s, keyed("k", `2`))
	k3 := e.enqueue(e.s, keyed("k", `3`))
	other := e.enqueue(e.s, keyed("other", `"o"`))
	plain := e.enqueue(e.s, draft(`"plain"`))
	got := e.claim(e.s, req(10, time.Minute))
	if want := fmt.Sprint([]string{k1.ID, other.ID, plain.ID}); fmt.Sprint(ids(got)) != want {
		e.Fatalf("first claim %v, want %s (the heads of k and other, and the unkeyed message)", ids(got), want)
	}
	if got[0].OrderingKey != "k" || got[2].OrderingKey != "" {
		e.Errorf("claimed ordering keys %q, %q", got[0].OrderingKey, got[2].OrderingKey)
	}
	if again := e.claim(e.s, req(10, time.Minute)); len(again) != 0 {
		e.Fatalf("claimed %v while every key's head is claimed", ids(again))
	}
	e.ack(e.s, got[0])
	next := e.claim(e.s, req(10, time.Minute))
	if len(next) != 1 || next[0].ID != k2.ID {
		e.Fatalf("after acking k's head: %v, want [%s]", ids(next), k2.ID)
	}
	e.ack(e.s, next[0])
	if last := e.claim(e.s, req(10, time.Minute)); len(last) != 1 || last[0].ID != k3.ID {
		e.Fatalf("then: %v, want [%s]", ids(last), k3.ID)
	}
}

// TestOrderingNackedHeadHoldsKey checks that a nacked head stays the head: its
// retry time holds the key, and it is the next message of its key handed out.
func TestOrderingNackedHeadHoldsKey(t *testing.T, h Harness) {
	e := start(t, h)
	k1 := e.enqueue(e.s, keyed("k", `1`))
	e.enqueue(e.s, keyed("k", `2`))
	got := e.claim(e.s, req(10, time.Minute))
	if out, err := e.s.NackAfter(e.ctx, got[0].ID, got[0].ClaimToken, "later", time.Minute); err != nil || out != outbox.NackRequeued {
		e.Fatal(out, err)
	}
	if held := e.claim(e.s, req(10, time.Minute)); len(held) != 0 {
		e.Fatalf("claimed %v while the key's head waits for its retry", ids(held))
	}
	e.clk.advance(time.Minute)
	again := e.claim(e.s, req(10, time.Minute))
	if len(again) != 1 || again[0].ID != k1.ID || again[0].AttemptCount != 2 {
		e.Fatalf("after the retry time: %+v, want the head again, attempt 2", again)
	}
}

// TestOrderingExpiredHeadHandedOutAgain checks that a claimed head holds its
// key while its lease lasts, that an expired lease hands out the same head
// again (attempt counted), and that a poison head dead-letters and then
// holds its key.
func TestOrderingExpiredHeadHandedOutAgain(t *testing.T, h Harness) {
	e := start(t, h)
	d := keyed("k", `1`)
	d.MaxAttempts = 2
	k1 := e.enqueue(e.s, d)
	e.enqueue(e.s, keyed("k", `2`))
	e.claim(e.s, req(10, time.Second))
	e.clk.advance(999 * time.Millisecond)
	if held := e.claim(e.s, req(10, time.Second)); len(held) != 0 {
		e.Fatalf("claimed %v while the head's lease lasts", ids(held))
	}
	e.clk.advance(time.Millisecond)
	again := e.claim(e.s, req(10, time.Second))
	if len(again) != 1 || again[0].ID != k1.ID || again[0].AttemptCount != 2 {
		e.Fatalf("after the lease: %+v, want the head again, attempt 2", again)
	}
	e.clk.advance(time.Second)
	if held := e.claim(e.s, req(10, time.Second)); len(held) != 0 {
		e.Fatalf("claimed %v after the poison head dead-lettered", ids(held))
	}
	if m := e.get(k1.ID); m.Status != outbox.StatusDeadLetter {
		e.Fatalf("the poison head is %s", m.Status)
	}
}

// deadHead enqueues k1 and k2 under one key, dead-letters k1, and returns
// both.
func (e *env) deadHead(s Store) (outbox.Message, outbox.Message) {
	e.Helper()
	k1 := e.enqueue(s, keyed("k", `1`))
	k2 := e.enqueue(s, keyed("k", `2`))
	got := e.claim(s, req(10, time.Minute))
	if len(got) != 1 || got[0].ID != k1.ID {
		e.Fatalf("claimed %v, want the head %s", ids(got), k1.ID)
	}
	if ok, err := s.DeadLetter(e.ctx, k1.ID, got[0].ClaimToken, "broken"); err != nil || !ok {
		e.Fatal(ok, err)
	}
	return k1, k2
}

// TestOrderingDeadHeadHoldsKey checks that a dead-lettered head holds its key
// (order is never broken silently) and that redriving it resumes the key in
// order: the dead letter first, then the rest.
func TestOrderingDeadHeadHoldsKey(t *testing.T, h Harness) {
	e := start(t, h)
	k1, k2 := e.deadHead(e.s)
	if held := e.claim(e.s, req(10, time.Minute)); len(held) != 0 {
		e.Fatalf("claimed %v while the key's head is a dead letter", ids(held))
	}
	if res, err := e.s.Redrive(e.ctx, outbox.RedriveRequest{IDs: []string{k1.ID}}); err != nil || res.Redriven != 1 {
		e.Fatal(res, err)
	}
	got := e.claim(e.s, req(10, time.Minute))
	if len(got) != 1 || got[0].ID != k1.ID {
		e.Fatalf("after the redrive: %v, want the redriven head %s", ids(got), k1.ID)
	}
	e.ack(e.s, got[0])
	if next := e.claim(e.s, req(10, time.Minute)); len(next) != 1 || next[0].ID != k2.ID {
		e.Fatalf("then: %v, want %s", ids(next), k2.ID)
	}
}

// wantKeyHold checks what s says, through Get and List, about whether the
// message id holds its ordering key: Message.OrderingKeyReleased and
// Message.HoldsOrderingKey.
func (e *env) wantKeyHold(s Store, id string, status outbox.Status, released, holds bool) {
	e.Helper()
	got, err := s.Get(e.ctx, id)
	if err != nil {
		e.Fatalf("get %s: %v", id, err)
	}
	listed, err := s.List(e.ctx, outbox.ListFilter{Status: status, Limit: outbox.MaxListLimit})
	if err != nil {
		e.Fatal(err)
	}
	i := slices.IndexFunc(listed, func(m outbox.Message) bool { return m.ID == id })
	if i < 0 {
		e.Fatalf("%s is not listed among the %s messages", id, status)
	}
	for _, m := range []struct {
		how string
		m   outbox.Message
	}{{"get", got}, {"list", listed[i]}} {
		if m.m.Status != status || m.m.OrderingKeyReleased != released || m.m.HoldsOrderingKey() != holds {
			e.Errorf("%s %s: status %s, OrderingKeyReleased %t, HoldsOrderingKey %t; want %s, %t, %t",
				m.how, id, m.m.Status, m.m.OrderingKeyReleased, m.m.HoldsOrderingKey(), status, released, holds)
		}
	}
}

// TestOrderingReleaseKey checks that an operator's release lets a key held
// by a dead letter move on: the next message becomes the head, the dead
// letter stays a dead letter and says it no longer holds its key
// (Message.OrderingKeyReleased), and a redrive makes it hold the key again.
func TestOrderingReleaseKey(t *testing.T, h Harness) {
	e := start(t, h)
	k1, k2 := e.deadHead(e.s)
	e.wantKeyHold(e.s, k1.ID, outbox.StatusDeadLetter, false, true)
	e.wantKeyHold(e.s, k2.ID, outbox.StatusPending, false, true)
	n, err := e.s.ReleaseOrderingKey(e.ctx, lane, target, "k")
	if err != nil || n != 1 {
		e.Fatalf("release: %d %v", n, err)
	}
	e.wantKeyHold(e.s, k1.ID, outbox.StatusDeadLetter, true, false)
	e.wantKeyHold(e.s, k2.ID, outbox.StatusPending, false, true)
	got := e.claim(e.s, req(10, time.Minute))
	if len(got) != 1 || got[0].ID != k2.ID {
		e.Fatalf("after the release: %v, want the next message %s", ids(got), k2.ID)
	}
	if got[0].OrderingKeyReleased || !got[0].HoldsOrderingKey() {
		e.Errorf("the claimed head: OrderingKeyReleased %t, HoldsOrderingKey %t; want false, true",
			got[0].OrderingKeyReleased, got[0].HoldsOrderingKey())
	}
	e.wantKeyHold(e.s, k1.ID, outbox.StatusDeadLetter, true, false)
	if n, err := e.s.ReleaseOrderingKey(e.ctx, lane, target, "k"); err != nil || n != 0 {
		e.Errorf("a second release: %d %v, want 0", n, err)
	}
	if n, err := e.s.ReleaseOrderingKey(e.ctx, lane, target, "unknown"); err != nil || n != 0 {
		e.Errorf("an unknown key: %d %v, want 0", n, err)
	}
	_, err = e.s.ReleaseOrderingKey(e.ctx, lane, target, " ")
	wantField(e.T, err, "ordering_key")
	// Redrive clears the release: the message is pending, and holds its key
	// again.
	if res, err := e.s.Redrive(e.ctx, outbox.RedriveRequest{IDs: []string{k1.ID}}); err != nil || res.Redriven != 1 {
		e.Fatal(res, err)
	}
	e.wantKeyHold(e.s, k1.ID, outbox.StatusPending, false, true)
}

// TestOrderingSkipDeadLetters checks the opt-in policy: a dead-lettered head
// releases its key at once.
func TestOrderingSkipDeadLetters(t *testing.T, h Harness) {
	e := start(t, h)
	s := h.NewSkippingDeadLetters(t, e.clk.Now)
	k1, k2 := e.deadHead(s)
	e.wantKeyHold(s, k1.ID, outbox.StatusDeadLetter, true, false)
	got := e.claim(s, req(10, time.Minute))
	if len(got) != 1 || got[0].ID != k2.ID {
		e.Fatalf("after the head dead-lettered: %v, want %s", ids(got), k2.ID)
	}
	// Out of attempts when nacked, and when its lease expires, a head
	// releases its key the same way; an unkeyed dead letter has no key to
	// release.
	once := func(d outbox.Draft) outbox.Draft { d.MaxAttempts = 1; return d }
	nacked := e.enqueue(s, once(keyed("nacked", `3`)))
	expired := e.enqueue(s, once(keyed("expired", `4`)))
	plain := e.enqueue(s, once(draft(`"plain"`)))
	got = e.claim(s, req(10, time.Second))
	if want := fmt.Sprint([]string{nacked.ID, expired.ID, plain.ID}); fmt.Sprint(ids(got)) != want {
		e.Fatalf("claimed %v, want %s", ids(got), want)
	}
	if out, err := s.NackAfter(e.ctx, nacked.ID, got[0].ClaimToken, "broken", time.Minute); err != nil || out != outbox.NackDeadLettered {
		e.Fatal(out, err)
	}
	e.clk.advance(time.Second)
	e.claim(s, req(10, time.Second)) // dead-letters the expired claims
	e.wantKeyHold(s, nacked.ID, outbox.StatusDeadLetter, true, false)
	e.wantKeyHold(s, expired.ID, outbox.StatusDeadLetter, true, false)
	e.wantKeyHold(s, plain.ID, outbox.StatusDeadLetter, false, false)
}

// TestOrderingKeyIsPerLaneTargetAndScope checks that a key orders only the
// messages of its own scope, lane and target.
func TestOrderingKeyIsPerLaneTargetAndScope(t *testing.T, h Harness) {
	e := start(t, h)
	scoped, err := h.Scoped(e.s, "tenant")
	if err != nil {
		e.Fatal(err)
	}
	a := e.enqueue(e.s, keyed("k", `1`))
	b := e.enqueue(scoped, keyed("k", `2`))
	elsewhere := keyed("k", `3`)
	elsewhere.Target = "elsewhere"
	c := e.enqueue(e.s, elsewhere)
	for _, x := range []struct {
		s    Store
		r    outbox.ClaimRequest
		want string
	}{
		{e.s, req(10, time.Minute), a.ID},
		{scoped, req(10, time.Minute), b.ID},
		{e.s, outbox.ClaimRequest{Lane: lane, Target: "elsewhere", Limit: 10, Lease: time.Minute, ConsumerID: "c"}, c.ID},
	} {
		if got := e.claim(x.s, x.r); len(got) != 1 || got[0].ID != x.want {
			e.Errorf("claim %+v: %v, want [%s]", x.r, ids(got), x.want)
		}
	}
}

// TestOrderingKeysTakeTurns checks that keys are served round robin: with a
// key of many messages among keys of one, claims of one message at a time
// (each acked) serve every key before the busy one's second message.
func TestOrderingKeysTakeTurns(t *testing.T, h Harness) {
	e := start(t, h)
	for i := range 5 {
		e.enqueue(e.s, keyed("busy", fmt.Sprint(i)))
	}
	for _, k := range []string{"a", "b", "c"} {
		e.enqueue(e.s, keyed(k, `"cold"`))
	}
	var served []string
	for range 6 {
		got := e.claim(e.s, req(1, time.Minute))
		if len(got) != 1 {
			e.Fatalf("claimed %d", len(got))
		}
		served = append(served, got[0].OrderingKey)
		e.ack(e.s, got[0])
	}
	if want := "a b busy c busy busy"; strings.Join(served, " ") != want {
		e.Errorf("keys served %v, want %s (round robin from the start)", served, want)
	}
}

// TestOrderingDedupeAddsNothingToTheKey checks that a deduplicated enqueue
// adds no message to its key, and that another ordering key under the same
// dedupe key is a conflict.
func TestOrderingDedupeAddsNothingToTheKey(t *testing.T, h Harness) {
	e := start(t, h)
	d := keyed("k", `1`)
	d.DedupeKey = "once"
	first := e.enqueue(e.s, d)
	r, err := e.s.Enqueue(e.ctx, d)
	if err != nil || !r.Deduplicated || r.Message.ID != first.ID || r.Message.OrderingKey != "k" {
		e.Fatalf("same draft: %+v %v", r, err)
	}
	other := d
	other.OrderingKey = "k2"
	_, err = e.s.Enqueue(e.ctx, other)
	var cerr *outbox.ConflictError
	if !errors.As(err, &cerr) || cerr.Field != "ordering_key" {
		e.Errorf("another ordering key under the dedupe key: %v", err)
	}
	if l, _ := e.s.List(e.ctx, outbox.ListFilter{OrderingKey: "k"}); len(l) != 1 {
		e.Errorf("the key holds %d messages, want 1", len(l))
	}
}

// TestOrderingKeyValidationAndListing checks that ordering keys are
// validated like dedupe keys (nothing written on a refusal), come back
// wherever a message does, and filter a listing.
func TestOrderingKeyValidationAndListing(t *testing.T, h Harness) {
	e := start(t, h)
	for _, k := range []string{" ", "a\x00b", strings.Repeat("k", outbox.MaxOrderingKeyBytes+1), "\xff"} {
		_, err := e.s.Enqueue(e.ctx, keyed(k, `1`))
		wantField(e.T, err, "ordering_key")
		_, err = e.s.EnqueueMany(e.ctx, []outbox.Draft{draft(`1`), keyed(k, `2`)})
		wantField(e.T, err, "ordering_key")
	}
	if n := len(e.all()); n != 0 {
		e.Fatalf("%d messages after refused enqueues", n)
	}
	res, err := e.s.EnqueueMany(e.ctx, []outbox.Draft{keyed("k", `1`), draft(`2`), keyed("k", `3`)})
	if err != nil || res[0].Message.OrderingKey != "k" || res[1].Message.OrderingKey != "" {
		e.Fatalf("batch: %+v %v", res, err)
	}
	if m := e.get(res[2].Message.ID); m.OrderingKey != "k" {
		e.Errorf("get: ordering key %q", m.OrderingKey)
	}
	l, err := e.s.List(e.ctx, outbox.ListFilter{OrderingKey: "k"})
	if err != nil || len(l) != 2 || l[0].ID != res[0].Message.ID || l[1].ID != res[2].Message.ID {
		e.Errorf("list by key: %v %v", ids(l), err)
	}
	_, err = e.s.List(e.ctx, outbox.ListFilter{OrderingKey: "\x00"})
	wantField(e.T, err, "ordering_key")
}

// TestSameDraftAfterNack checks that dedupe compares what the producer set:
// after a nack moved the message's available_at, the same draft (its own
// AvailableAt included) still deduplicates, and another AvailableAt is a
// conflict.
func TestSameDraftAfterNack(t *testing.T, h Harness) {
	e := start(t, h)
	d := draft(`{}`)
	d.DedupeKey = "k"
	d.AvailableAt = e.clk.Now().Add(-time.Second)
	first := e.enqueue(e.s, d)
	got := e.claim(e.s, req(1, time.Minute))
	if out, err := e.s.NackAfter(e.ctx, got[0].ID, got[0].ClaimToken, "later", time.Minute); err != nil || out != outbox.NackRequeued {
		e.Fatal(out, err)
	}
	r, err := e.s.Enqueue(e.ctx, d)
	if err != nil || !r.Deduplicated || r.Message.ID != first.ID {
		e.Fatalf("the same draft after a nack: %+v %v", r, err)
	}
	other := d
	other.AvailableAt = d.AvailableAt.Add(time.Hour)
	_, err = e.s.Enqueue(e.ctx, other)
	var cerr *outbox.ConflictError
	if !errors.As(err, &cerr) || cerr.Field != "available_at" {
		e.Errorf("another AvailableAt: %v", err)
	}

	// Dead-lettering and a redrive move the row too; the draft stays the same.
	e.clk.advance(2 * time.Minute)
	got = e.claim(e.s, req(1, time.Minute))
	if len(got) != 1 {
		e.Fatalf("claimed %d after the retry time", len(got))
	}
	if ok, err := e.s.DeadLetter(e.ctx, got[0].ID, got[0].ClaimToken, "gone"); err != nil || !ok {
		e.Fatal(ok, err)
	}
	if r, err := e.s.Enqueue(e.ctx, d); err != nil || !r.Deduplicated || r.Message.ID != first.ID {
		e.Fatalf("the same draft after a dead letter: %+v %v", r, err)
	}
	if res, err := e.s.Redrive(e.ctx, outbox.RedriveRequest{IDs: []string{first.ID}}); err != nil || res.Redriven != 1 {
		e.Fatalf("redrive: %+v %v", res, err)
	}
	if r, err := e.s.Enqueue(e.ctx, d); err != nil || !r.Deduplicated || r.Message.ID != first.ID {
		e.Fatalf("the same draft after a redrive: %+v %v", r, err)
	}
}

// TestHeadersRoundTrip checks that headers are validated (refusals name the
// header, nothing written), stored, returned wherever a message comes back,
// and compared by dedupe.
func TestHeadersRoundTrip(t *testing.T, h Harness) {
	e := start(t, h)
	for name, hdrs := range map[string]map[string]string{
		`headers[" "]`:     {" ": "x"},
		`headers["a"]`:     {"a": "b\x00"},
		`headers["n\x00"]`: {"n\x00": "v"},
		`headers["` + strings.Repeat("n", 256) + `"]`: {strings.Repeat("n", 256): "v"},
		"headers": {"big": strings.Repeat("v", outbox.MaxHeadersBytes)},
	} {
		d := draft(`1`)
		d.Headers = hdrs
		_, err := e.s.Enqueue(e.ctx, d)
		wantField(e.T, err, name)
	}
	if n := len(e.all()); n != 0 {
		e.Fatalf("%d messages after refused enqueues", n)
	}
	d := draft(`{}`)
	d.Headers = map[string]string{"content-type": "application/json", "x-tenant": "ada é"}
	d.DedupeKey = "h"
	m := e.enqueue(e.s, d)
	check := func(where string, got map[string]string) {
		e.Helper()
		if len(got) != 2 || got["content-type"] != "application/json" || got["x-tenant"] != "ada é" {
			e.Errorf("%s: headers %v", where, got)
		}
	}
	check("enqueue", m.Headers)
	check("get", e.get(m.ID).Headers)
	check("list", e.all()[0].Headers)
	check("claim", e.claim(e.s, req(1, time.Minute))[0].Headers)
	if plain := e.enqueue(e.s, draft(`2`)); plain.Headers != nil {
		e.Errorf("a message without headers has %v", plain.Headers)
	}
	res, err := e.s.EnqueueMany(e.ctx, []outbox.Draft{{Lane: lane, Target: target, Payload: json.RawMessage(`3`), Headers: map[string]string{"a": "1"}}, draft(`4`)})
	if err != nil || res[0].Message.Headers["a"] != "1" || res[1].Message.Headers != nil {
		e.Errorf("batch: %+v %v", res, err)
	}
	other := d
	other.Headers = map[string]string{"content-type": "text/plain", "x-tenant": "ada é"}
	_, err = e.s.Enqueue(e.ctx, other)
	var cerr *outbox.ConflictError
	if !errors.As(err, &cerr) || cerr.Field != "headers" {
		e.Errorf("other headers under the dedupe key: %v", err)
	}
	if r, err := e.s.Enqueue(e.ctx, d); err != nil || !r.Deduplicated {
		e.Errorf("the same headers: %+v %v", r, err)
	}
}
