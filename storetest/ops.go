package storetest

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pgoutbox/pgoutbox/outbox"
)

// TestListFiltersAndLimits checks that List filters by status and bounds the page.
func TestListFiltersAndLimits(t *testing.T, h Harness) {
	e := start(t, h)
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
}

// TestListFiltersPages checks that List filters by lane and target and pages by id.
func TestListFiltersPages(t *testing.T, h Harness) {
	e := start(t, h)
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
}

// TestRedrive checks that Redrive by ids and by lane, target and error text returns dead letters to pending with fresh attempts.
func TestRedrive(t *testing.T, h Harness) {
	e := start(t, h)
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
}

// TestPurgeAndStats checks that Stats counts each status per lane and target; Purge deletes finished messages older than asked.
func TestPurgeAndStats(t *testing.T, h Harness) {
	e := start(t, h)
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
}

// TestPurgeFreesDedupeKeys checks that purging a message frees its dedupe key.
func TestPurgeFreesDedupeKeys(t *testing.T, h Harness) {
	e := start(t, h)
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
}

// TestRedriveNamesEachIDOnce checks that an id given twice is redriven and
// reported once, and that an id in another form than the store's is not a
// dead letter.
func TestRedriveNamesEachIDOnce(t *testing.T, h Harness) {
	e := start(t, h)
	d := draft(`{}`)
	d.MaxAttempts = 1
	m := e.enqueue(e.s, d)
	got := e.claim(e.s, req(1, time.Minute))
	if ok, err := e.s.DeadLetter(e.ctx, got[0].ID, got[0].ClaimToken, "x"); err != nil || !ok {
		e.Fatal(ok, err)
	}
	res, err := e.s.Redrive(e.ctx, outbox.RedriveRequest{IDs: []string{m.ID, m.ID, "0" + m.ID, "0" + m.ID}})
	if err != nil || res.Redriven != 1 || len(res.NotDead) != 1 || res.NotDead[0] != "0"+m.ID {
		e.Errorf("redrive [id id 0id 0id] = %+v %v; want 1 redriven, NotDead [0id]", res, err)
	}
}

// TestStatsInByteOrder checks that Stats orders lanes and targets by their
// bytes, whatever the database's collation ("B" before "a").
func TestStatsInByteOrder(t *testing.T, h Harness) {
	e := start(t, h)
	for _, l := range []string{"a", "B", "b", "A"} {
		e.enqueue(e.s, outbox.Draft{Lane: l, Target: "t", Payload: json.RawMessage(`1`)})
	}
	stats, err := e.s.Stats(e.ctx, false)
	if err != nil {
		e.Fatal(err)
	}
	var lanes []string
	for _, st := range stats {
		lanes = append(lanes, st.Lane)
	}
	if strings.Join(lanes, " ") != "A B a b" {
		e.Errorf("lanes in order %v, want [A B a b]", lanes)
	}
}

// TestListFiltersByDedupeKeyAndError checks that List filters by dedupe key and by the text of the last error, and refuses bad filters.
func TestListFiltersByDedupeKeyAndError(t *testing.T, h Harness) {
	e := start(t, h)
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
}

// TestListLiveStatusesPageInIDOrder checks that pages of a live status come in id order, whatever index serves them.
func TestListLiveStatusesPageInIDOrder(t *testing.T, h Harness) {
	e := start(t, h)
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
}
