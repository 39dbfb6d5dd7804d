// Package storetest is the conformance suite of outbox stores: one set of
// tests that outbox.PostgresStore (on real PostgreSQL) and memstore.Store
// both pass, so that unit tests written against the in-memory store hold
// against the real one.
package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pgoutbox/pgoutbox/outbox"
)

// Store is the surface both stores implement.
type Store interface {
	outbox.Store
	Scope() string
	Get(ctx context.Context, id string) (outbox.Message, error)
	EnqueueMany(ctx context.Context, drafts []outbox.Draft) ([]outbox.EnqueueResult, error)
	AckMany(ctx context.Context, receipts []outbox.Receipt) ([]bool, error)
	NackAfter(ctx context.Context, id, claimToken, reason string, delay time.Duration) (outbox.NackOutcome, error)
	DeadLetter(ctx context.Context, id, claimToken, reason string) (bool, error)
	ExtendLease(ctx context.Context, id, claimToken string, lease time.Duration) (bool, error)
	ExtendLeases(ctx context.Context, receipts []outbox.Receipt, lease time.Duration) ([]bool, error)
	Redrive(ctx context.Context, r outbox.RedriveRequest) (outbox.RedriveResult, error)
	Purge(ctx context.Context, r outbox.PurgeRequest) (int64, error)
	PurgeCount(ctx context.Context, r outbox.PurgeRequest) (int64, error)
	Stats(ctx context.Context, withDelivered bool) ([]outbox.Stats, error)
}

// Harness makes stores for the suite.
type Harness struct {
	// New returns an empty store that reads time from now.
	New func(t *testing.T, now func() time.Time) Store
	// Scoped returns a view of s limited to scope.
	Scoped func(s Store, scope string) (Store, error)
}

// Run runs the suite, each case in a subtest on a fresh store.
func Run(t *testing.T, h Harness) {
	for _, c := range cases() {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			clk := &clock{now: time.Date(2030, 6, 1, 12, 0, 0, 0, time.UTC)}
			c.run(&env{T: t, ctx: t.Context(), h: h, clk: clk, s: h.New(t, clk.Now)})
		})
	}
}

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

type env struct {
	*testing.T
	ctx context.Context
	h   Harness
	clk *clock
	s   Store
}

const lane, target = "lane", "target"

func draft(payload string) outbox.Draft {
	return outbox.Draft{Lane: lane, Target: target, Payload: json.RawMessage(payload)}
}

func req(limit int, lease time.Duration) outbox.ClaimRequest {
	return outbox.ClaimRequest{Lane: lane, Target: target, Limit: limit, Lease: lease, ConsumerID: "consumer"}
}

func (e *env) enqueue(s Store, d outbox.Draft) outbox.Message {
	e.Helper()
	r, err := s.Enqueue(e.ctx, d)
	if err != nil {
		e.Fatalf("enqueue: %v", err)
	}
	return r.Message
}

func (e *env) claim(s Store, r outbox.ClaimRequest) []outbox.Message {
	e.Helper()
	m, err := s.Claim(e.ctx, r)
	if err != nil {
		e.Fatalf("claim: %v", err)
	}
	return m
}

func (e *env) get(id string) outbox.Message {
	e.Helper()
	m, err := e.s.Get(e.ctx, id)
	if err != nil {
		e.Fatalf("get %s: %v", id, err)
	}
	return m
}

func (e *env) all() []outbox.Message {
	e.Helper()
	l, err := e.s.List(e.ctx, outbox.ListFilter{Limit: outbox.MaxListLimit})
	if err != nil {
		e.Fatal(err)
	}
	return l
}

func wantField(t *testing.T, err error, field string) {
	t.Helper()
	var verr *outbox.ValidationError
	if !errors.Is(err, outbox.ErrValidation) || !errors.As(err, &verr) || verr.Field != field {
		t.Errorf("err = %v, want ErrValidation on %s", err, field)
	}
}

type testCase struct {
	name string
	run  func(e *env)
}

func cases() []testCase {
	return []testCase{
		{"EnqueueThenGet", func(e *env) {
			m := e.enqueue(e.s, draft(`{"a":[1,2]}`))
			got := e.get(m.ID)
			if got.Status != outbox.StatusPending || got.AttemptCount != 0 || got.MaxAttempts != outbox.DefaultMaxAttempts ||
				!got.AvailableAt.Equal(e.clk.Now()) || !got.CreatedAt.Equal(e.clk.Now()) || got.ClaimToken != "" {
				e.Errorf("stored %+v", got)
			}
			if _, err := e.s.Get(e.ctx, "999999"); !errors.Is(err, outbox.ErrNotFound) {
				e.Errorf("unknown id: %v", err)
			}
		}},
		{"InvalidDraftsWriteNothing", func(e *env) {
			for field, d := range map[string]outbox.Draft{
				"lane":         {Lane: " ", Target: target, Payload: json.RawMessage(`1`)},
				"target":       {Lane: lane, Target: "a\x00", Payload: json.RawMessage(`1`)},
				"dedupe_key":   {Lane: lane, Target: target, Payload: json.RawMessage(`1`), DedupeKey: "\t"},
				"max_attempts": {Lane: lane, Target: target, Payload: json.RawMessage(`1`), MaxAttempts: -1},
				"payload":      {Lane: lane, Target: target, Payload: json.RawMessage(`"\u0000"`)},
			} {
				_, err := e.s.Enqueue(e.ctx, d)
				wantField(e.T, err, field)
			}
			if n := len(e.all()); n != 0 {
				e.Errorf("%d messages after refused enqueues", n)
			}
		}},
		{"Dedupe", func(e *env) {
			d := draft(`{"a":1,"b":2}`)
			d.DedupeKey = "k"
			first := e.enqueue(e.s, d)
			same := d
			same.Payload = json.RawMessage(`{"b": 2.0, "a": 1}`) // jsonb-equal
			r, err := e.s.Enqueue(e.ctx, same)
			if err != nil || !r.Deduplicated || r.Message.ID != first.ID {
				e.Fatalf("same draft: %+v %v", r, err)
			}
			for field, edit := range map[string]func(*outbox.Draft){
				"payload":      func(d *outbox.Draft) { d.Payload = json.RawMessage(`{"a":2}`) },
				"max_attempts": func(d *outbox.Draft) { d.MaxAttempts = 2 },
			} {
				other := d
				edit(&other)
				_, err := e.s.Enqueue(e.ctx, other)
				var cerr *outbox.ConflictError
				if !errors.Is(err, outbox.ErrConflict) || !errors.As(err, &cerr) || cerr.Field != field || cerr.Existing.ID != first.ID {
					e.Errorf("%s: %v", field, err)
				}
			}
			if n := len(e.all()); n != 1 {
				e.Errorf("%d messages, want 1", n)
			}
		}},
		{"EnqueueManyIsAtomic", func(e *env) {
			k := draft(`[1]`)
			k.DedupeKey = "k"
			res, err := e.s.EnqueueMany(e.ctx, []outbox.Draft{draft(`1`), k, k})
			if err != nil || len(res) != 3 || res[1].Deduplicated || !res[2].Deduplicated || res[2].Message.ID != res[1].Message.ID {
				e.Fatalf("batch: %+v %v", res, err)
			}
			clash := k
			clash.Payload = json.RawMessage(`[2]`)
			_, err = e.s.EnqueueMany(e.ctx, []outbox.Draft{draft(`2`), clash})
			if !errors.Is(err, outbox.ErrConflict) || !strings.Contains(err.Error(), "draft 1") {
				e.Errorf("conflicting batch: %v", err)
			}
			if n := len(e.all()); n != 2 {
				e.Errorf("%d messages, want 2: a conflicting batch wrote something", n)
			}
		}},
		{"ClaimOrderAndFields", func(e *env) {
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
		}},
		{"ClaimLimitLaneTargetAndValidation", func(e *env) {
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
		}},
		{"LeaseFencing", func(e *env) {
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
		}},
		{"PoisonMessageDeadLettered", func(e *env) {
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
		}},
		{"AckAndAckMany", func(e *env) {
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
		}},
		{"NackRequeueThenDeadLetter", func(e *env) {
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
		}},
		{"NackAfterAndDeadLetter", func(e *env) {
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
		}},
		{"ExtendLease", func(e *env) {
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
		}},
		{"ListFiltersAndLimits", func(e *env) {
			var ids []string
			for range 5 {
				ids = append(ids, e.enqueue(e.s, draft(`{}`)).ID)
			}
			e.claim(e.s, req(2, time.Minute))
			for status, want := range map[outbox.Status]int{"": 5, outbox.StatusPending: 3, outbox.StatusClaimed: 2, outbox.StatusDelivered: 0} {
				l, err := e.s.List(e.ctx, outbox.ListFilter{Status: status})
				if err != nil || len(l) != want {
					e.Errorf("status %q: %d (%v), want %d", status, len(l), err, want)
				}
			}
			if l, _ := e.s.List(e.ctx, outbox.ListFilter{Limit: 2}); len(l) != 2 || l[0].ID != ids[0] || l[1].ID != ids[1] {
				e.Errorf("limit 2: %+v, want the two oldest", l)
			}
			_, err := e.s.List(e.ctx, outbox.ListFilter{Status: "nope"})
			wantField(e.T, err, "status")
		}},
		{"ListFiltersPages", func(e *env) {
			var ids []string
			for i := range 6 {
				d := draft(fmt.Sprint(i))
				if i%2 == 1 {
					d.Target = "other"
				}
				ids = append(ids, e.enqueue(e.s, d).ID)
			}
			page1, err := e.s.List(e.ctx, outbox.ListFilter{Target: target, Limit: 2})
			if err != nil || len(page1) != 2 || page1[0].ID != ids[0] || page1[1].ID != ids[2] {
				e.Fatalf("page 1: %+v %v", page1, err)
			}
			page2, err := e.s.List(e.ctx, outbox.ListFilter{Target: target, Limit: 2, AfterID: page1[1].ID})
			if err != nil || len(page2) != 1 || page2[0].ID != ids[4] {
				e.Fatalf("page 2: %+v %v", page2, err)
			}
			if l, _ := e.s.List(e.ctx, outbox.ListFilter{Lane: "nope"}); len(l) != 0 {
				e.Errorf("lane filter: %d", len(l))
			}
			_, err = e.s.List(e.ctx, outbox.ListFilter{AfterID: "x"})
			wantField(e.T, err, "after_id")
		}},
		{"ListFiltersByDedupeKeyAndError", func(e *env) {
			keyed := draft(`"keyed"`)
			keyed.DedupeKey = "order-7"
			k := e.enqueue(e.s, keyed)
			e.enqueue(e.s, draft(`"plain"`))
			for i := range 2 {
				d := draft(fmt.Sprint(i))
				d.MaxAttempts = 1 + i // the first dead-letters, the second is pending again
				e.enqueue(e.s, d)
			}
			for _, m := range e.claim(e.s, req(10, time.Minute)) {
				reason := "400 bad address"
				if m.MaxAttempts == 1 {
					reason = "503 unavailable"
				}
				if _, err := e.s.Nack(e.ctx, m.ID, m.ClaimToken, reason, time.Time{}); err != nil {
					e.Fatal(err)
				}
			}
			if l, err := e.s.List(e.ctx, outbox.ListFilter{DedupeKey: "order-7"}); err != nil || len(l) != 1 || l[0].ID != k.ID {
				e.Errorf("dedupe key: %+v %v", l, err)
			}
			if l, _ := e.s.List(e.ctx, outbox.ListFilter{Lane: lane, Target: target, DedupeKey: "order-8"}); len(l) != 0 {
				e.Errorf("unknown dedupe key: %+v", l)
			}
			for _, c := range []struct {
				status outbox.Status
				text   string
				want   int
			}{{"", "unavailable", 1}, {"", "bad", 3}, {outbox.StatusDeadLetter, "503", 1}, {outbox.StatusPending, "503", 0}, {outbox.StatusPending, "400", 3}, {"", "Bad", 0}} {
				l, err := e.s.List(e.ctx, outbox.ListFilter{Status: c.status, ErrorContains: c.text})
				if err != nil || len(l) != c.want {
					e.Errorf("status %q, error %q: %d (%v), want %d", c.status, c.text, len(l), err, c.want)
				}
				for _, m := range l {
					if !strings.Contains(m.LastError, c.text) {
						e.Errorf("status %q, error %q: got %q", c.status, c.text, m.LastError)
					}
				}
			}
			_, err := e.s.List(e.ctx, outbox.ListFilter{DedupeKey: " "})
			wantField(e.T, err, "dedupe_key")
			_, err = e.s.List(e.ctx, outbox.ListFilter{ErrorContains: "a\x00b"})
			wantField(e.T, err, "error_contains")
		}},
		{"ListLiveStatusesPageInIDOrder", func(e *env) {
			var ids []string
			for i := range 7 {
				ids = append(ids, e.enqueue(e.s, draft(fmt.Sprint(i))).ID)
			}
			var got []string
			after := ""
			for {
				page, err := e.s.List(e.ctx, outbox.ListFilter{Status: outbox.StatusPending, Limit: 3, AfterID: after})
				if err != nil {
					e.Fatal(err)
				}
				for _, m := range page {
					got = append(got, m.ID)
				}
				if len(page) < 3 {
					break
				}
				after = page[len(page)-1].ID
			}
			if !slices.Equal(got, ids) {
				e.Errorf("pages of pending: %v, want %v", got, ids)
			}
		}},
		{"Redrive", func(e *env) {
			var dead []string
			for i := range 3 {
				d := draft(fmt.Sprint(i))
				d.MaxAttempts = 1
				m := e.enqueue(e.s, d)
				got := e.claim(e.s, req(1, time.Minute))
				reason := "timeout"
				if i == 2 {
					reason = "400 bad address"
				}
				if out, err := e.s.Nack(e.ctx, got[0].ID, got[0].ClaimToken, reason, time.Time{}); err != nil || out != outbox.NackDeadLettered {
					e.Fatal(out, err)
				}
				dead = append(dead, m.ID)
			}
			alive := e.enqueue(e.s, draft(`"alive"`))
			res, err := e.s.Redrive(e.ctx, outbox.RedriveRequest{IDs: []string{dead[0], alive.ID, "999999"}})
			if err != nil || res.Redriven != 1 || len(res.NotDead) != 2 {
				e.Fatalf("by ids: %+v %v", res, err)
			}
			if m := e.get(dead[0]); m.Status != outbox.StatusPending || m.AttemptCount != 0 || m.LastError != "timeout" {
				e.Errorf("redriven %+v", m)
			}
			res, err = e.s.Redrive(e.ctx, outbox.RedriveRequest{Lane: lane, Target: target, ErrorContains: "400"})
			if err != nil || res.Redriven != 1 {
				e.Fatalf("by error: %+v %v", res, err)
			}
			if m := e.get(dead[1]); m.Status != outbox.StatusDeadLetter {
				e.Errorf("a dead letter without the error text was redriven")
			}
			_, err = e.s.Redrive(e.ctx, outbox.RedriveRequest{})
			wantField(e.T, err, "ids")
			_, err = e.s.Redrive(e.ctx, outbox.RedriveRequest{Lane: lane})
			wantField(e.T, err, "target")
		}},
		{"PurgeAndStats", func(e *env) {
			for range 4 {
				e.enqueue(e.s, draft(`{}`))
			}
			got := e.claim(e.s, req(3, time.Minute))
			if _, err := e.s.AckMany(e.ctx, []outbox.Receipt{got[0].Receipt(), got[1].Receipt()}); err != nil {
				e.Fatal(err)
			}
			d := draft(`"dies"`)
			d.MaxAttempts = 1
			d.Target = "t2"
			e.enqueue(e.s, d)
			dying := e.claim(e.s, outbox.ClaimRequest{Lane: lane, Target: "t2", Limit: 1, Lease: time.Second, ConsumerID: "c"})
			if ok, err := e.s.DeadLetter(e.ctx, dying[0].ID, dying[0].ClaimToken, "x"); err != nil || !ok {
				e.Fatal(ok, err)
			}
			e.clk.advance(time.Hour)
			stats, err := e.s.Stats(e.ctx, true)
			if err != nil || len(stats) != 2 {
				e.Fatalf("stats %+v %v", stats, err)
			}
			// Ordered by lane, then target: "t2" sorts before "target".
			s0 := stats[1]
			if s0.Target != target || s0.Pending != 1 || s0.Due != 1 || s0.Claimed != 1 || s0.ExpiredLeases != 1 ||
				s0.Delivered != 2 || s0.DeadLetters != 0 || s0.OldestDueAge != time.Hour {
				e.Errorf("stats %+v", s0)
			}
			if stats[0].Target != "t2" || stats[0].DeadLetters != 1 {
				e.Errorf("stats %+v", stats[0])
			}
			if fast, _ := e.s.Stats(e.ctx, false); len(fast) != 2 || fast[1].Delivered != -1 {
				e.Errorf("stats without delivered: %+v", fast)
			}
			if n, err := e.s.PurgeCount(e.ctx, outbox.PurgeRequest{OlderThan: 2 * time.Hour}); err != nil || n != 0 {
				e.Errorf("nothing is 2h old: %d %v", n, err)
			}
			n, err := e.s.PurgeCount(e.ctx, outbox.PurgeRequest{OlderThan: 30 * time.Minute, DeadLetters: true})
			if err != nil || n != 3 {
				e.Errorf("dry run: %d %v", n, err)
			}
			if n, err := e.s.Purge(e.ctx, outbox.PurgeRequest{OlderThan: 30 * time.Minute}); err != nil || n != 2 {
				e.Fatalf("purge: %d %v", n, err)
			}
			if n := len(e.all()); n != 3 {
				e.Errorf("%d messages left, want 3", n)
			}
			_, err = e.s.Purge(e.ctx, outbox.PurgeRequest{OlderThan: -time.Second})
			wantField(e.T, err, "older_than")
		}},
		{"PurgeFreesDedupeKeys", func(e *env) {
			d := draft(`{}`)
			d.DedupeKey = "once"
			first := e.enqueue(e.s, d)
			got := e.claim(e.s, req(1, time.Minute))
			if ok, _ := e.s.Ack(e.ctx, got[0].ID, got[0].ClaimToken); !ok {
				e.Fatal("ack")
			}
			e.clk.advance(time.Second) // OlderThan zero: everything finished before now
			if n, err := e.s.Purge(e.ctx, outbox.PurgeRequest{}); err != nil || n != 1 {
				e.Fatalf("purge: %d %v", n, err)
			}
			r, err := e.s.Enqueue(e.ctx, d)
			if err != nil || r.Deduplicated || r.Message.ID == first.ID {
				e.Errorf("key not freed: %+v %v", r, err)
			}
		}},
		{"ScopesAreIsolated", func(e *env) {
			a, err := e.h.Scoped(e.s, "tenant-a")
			if err != nil {
				e.Fatal(err)
			}
			d := draft(`{}`)
			d.DedupeKey = "k"
			ma := e.enqueue(a, d)
			mu := e.enqueue(e.s, d) // same key, other scope: a new message
			if ma.ID == mu.ID {
				e.Fatal("dedupe crossed scopes")
			}
			got := e.claim(a, req(10, time.Minute))
			if len(got) != 1 || got[0].ID != ma.ID {
				e.Fatalf("scoped claim %+v", got)
			}
			if ok, err := e.s.Ack(e.ctx, ma.ID, got[0].ClaimToken); err != nil || ok {
				e.Errorf("unscoped acked a scoped message: %v %v", ok, err)
			}
			if _, err := e.s.Get(e.ctx, ma.ID); !errors.Is(err, outbox.ErrNotFound) {
				e.Errorf("unscoped sees a scoped message: %v", err)
			}
			if l, _ := a.List(e.ctx, outbox.ListFilter{}); len(l) != 1 {
				e.Errorf("scoped list: %d", len(l))
			}
			if _, err := e.h.Scoped(e.s, " "); !errors.Is(err, outbox.ErrValidation) {
				e.Errorf("blank scope: %v", err)
			}
		}},
		{"ConcurrentClaimsHaveOneOwner", func(e *env) {
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
		}},
	}
}
