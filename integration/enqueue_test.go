package integration

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pgoutbox/pgoutbox/outbox"
)

func TestEnqueueStoresPendingMessage(t *testing.T) {
	f := newFixture(t)
	before := f.dbNow()
	d := draft(`{"order": 42, "items": ["a", "b"]}`)
	res, err := f.store.Enqueue(f.ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	m := res.Message
	if res.Deduplicated {
		t.Error("a first enqueue reported Deduplicated")
	}
	if m.ID == "" || m.Status != outbox.StatusPending || m.AttemptCount != 0 || m.MaxAttempts != outbox.DefaultMaxAttempts {
		t.Errorf("unexpected message %+v", m)
	}
	if m.Lane != d.Lane || m.Target != d.Target || m.DedupeKey != "" || m.ClaimedBy != "" || m.ClaimToken != "" || !m.LeaseExpiresAt.IsZero() || m.LastError != "" {
		t.Errorf("unexpected fields %+v", m)
	}
	var got, want any
	_ = json.Unmarshal(m.Payload, &got)
	_ = json.Unmarshal(d.Payload, &want)
	if !jsonEqual(got, want) {
		t.Errorf("payload %s, want %s", m.Payload, d.Payload)
	}
	if m.AvailableAt.Before(before) || !m.AvailableAt.Equal(m.CreatedAt) || !m.CreatedAt.Equal(m.UpdatedAt) {
		t.Errorf("times: available %v created %v updated %v (db now before %v)", m.AvailableAt, m.CreatedAt, m.UpdatedAt, before)
	}
	if stored := f.get(f.store, m.ID); !messagesEqual(stored, m) {
		t.Errorf("stored %+v\nreturned %+v", stored, m)
	}
}

func TestEnqueueDefaultsAndExplicitFields(t *testing.T) {
	f := newFixture(t)
	at := time.Date(2031, 5, 6, 7, 8, 9, 123456789, time.UTC)
	d := draft(`[]`)
	d.AvailableAt = at
	d.MaxAttempts = 9
	d.DedupeKey = "order-42"
	m := f.enqueue(f.store, d)
	if !m.AvailableAt.Equal(at.Truncate(time.Microsecond)) || m.MaxAttempts != 9 || m.DedupeKey != "order-42" {
		t.Errorf("got %+v", m)
	}
}

func TestEnqueueRejectsInvalidDraftsAndWritesNothing(t *testing.T) {
	f := newFixture(t)
	f.enqueue(f.store, draft(`{"keep": true}`)) // the table is not empty
	before := f.snapshot()

	long := strings.Repeat("x", 256)
	cases := []struct {
		name  string
		edit  func(*outbox.Draft)
		field string
	}{
		{"empty lane", func(d *outbox.Draft) { d.Lane = "" }, "lane"},
		{"blank lane", func(d *outbox.Draft) { d.Lane = " \t " }, "lane"},
		{"lane with NUL", func(d *outbox.Draft) { d.Lane = "can\x00onical" }, "lane"},
		{"lane with newline", func(d *outbox.Draft) { d.Lane = "canonical\n" }, "lane"},
		{"lane not UTF-8", func(d *outbox.Draft) { d.Lane = "lane\xff" }, "lane"},
		{"lane too long", func(d *outbox.Draft) { d.Lane = long }, "lane"},
		{"empty target", func(d *outbox.Draft) { d.Target = "" }, "target"},
		{"blank target", func(d *outbox.Draft) { d.Target = "   " }, "target"},
		{"target with NUL", func(d *outbox.Draft) { d.Target = "\x00" }, "target"},
		{"whitespace dedupe key", func(d *outbox.Draft) { d.DedupeKey = "  " }, "dedupe_key"},
		{"dedupe key with NUL", func(d *outbox.Draft) { d.DedupeKey = "k\x00" }, "dedupe_key"},
		{"dedupe key too long", func(d *outbox.Draft) { d.DedupeKey = strings.Repeat("k", 1025) }, "dedupe_key"},
		{"negative max attempts", func(d *outbox.Draft) { d.MaxAttempts = -1 }, "max_attempts"},
		{"huge max attempts", func(d *outbox.Draft) { d.MaxAttempts = 1 << 40 }, "max_attempts"},
		{"available_at out of range", func(d *outbox.Draft) { d.AvailableAt = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) }, "available_at"},
		{"nil payload", func(d *outbox.Draft) { d.Payload = nil }, "payload"},
		{"empty payload", func(d *outbox.Draft) { d.Payload = json.RawMessage{} }, "payload"},
		{"whitespace payload", func(d *outbox.Draft) { d.Payload = json.RawMessage("  ") }, "payload"},
		{"payload not JSON", func(d *outbox.Draft) { d.Payload = json.RawMessage(`{"a":`) }, "payload"},
		{"payload two values", func(d *outbox.Draft) { d.Payload = json.RawMessage(`{} {}`) }, "payload"},
		{"payload \\u0000 escape", func(d *outbox.Draft) { d.Payload = json.RawMessage(`{"a":"x\u0000y"}`) }, "payload"},
		{"payload \\u0000 in key", func(d *outbox.Draft) { d.Payload = json.RawMessage(`{"\u0000":1}`) }, "payload"},
		{"payload raw NUL", func(d *outbox.Draft) { d.Payload = json.RawMessage("{\"a\":\"x\x00\"}") }, "payload"},
		{"payload invalid UTF-8", func(d *outbox.Draft) { d.Payload = json.RawMessage("\"\xff\"") }, "payload"},
		{"payload lone surrogate", func(d *outbox.Draft) { d.Payload = json.RawMessage(`"\ud800"`) }, "payload"},
		{"payload number too large", func(d *outbox.Draft) { d.Payload = json.RawMessage(`1e131072`) }, "payload"},
		{"payload number too precise", func(d *outbox.Draft) { d.Payload = json.RawMessage(`1e-16384`) }, "payload"},
		{"payload too deep", func(d *outbox.Draft) {
			d.Payload = json.RawMessage(strings.Repeat("[", 1001) + strings.Repeat("]", 1001))
		}, "payload"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := draft(`{"ok": true}`)
			d.DedupeKey = "valid-key"
			c.edit(&d)
			_, err := f.store.Enqueue(f.ctx, d)
			if !errors.Is(err, outbox.ErrValidation) {
				t.Fatalf("err = %v, want ErrValidation", err)
			}
			var verr *outbox.ValidationError
			if !errors.As(err, &verr) || verr.Field != c.field {
				t.Fatalf("err = %v, want field %q", err, c.field)
			}
			if !strings.Contains(err.Error(), c.field) {
				t.Errorf("message %q does not name %q", err, c.field)
			}
			if err := d.Validate(); !errors.Is(err, outbox.ErrValidation) {
				t.Errorf("Draft.Validate = %v, want ErrValidation", err)
			}
		})
	}
	if after := f.snapshot(); after != before {
		t.Errorf("a refused enqueue changed the table:\nbefore %s\nafter  %s", before, after)
	}
}

// Payloads at the edge of what jsonb accepts are stored, not refused: the
// validation must not be stricter than Postgres.
func TestEnqueueAcceptsEveryPayloadJSONBStores(t *testing.T) {
	f := newFixture(t)
	payloads := []string{
		`null`, `0`, `-0`, `"text"`, `true`, `[]`, `{}`,
		`{"a":1,"a":2}`,
		`"\ud83d\ude00 \u00e9 \uFFFF \\u0000 \"quoted\""`,
		`1e131071`, `1e-16383`, `0e200000`, `123.456e-16380`, `-9.99e+99`,
		strings.Repeat("[", 1000) + strings.Repeat("]", 1000),
		`{"sql": "'); DROP TABLE pgoutbox_message; --"}`,
	}
	for _, p := range payloads {
		d := draft(p)
		res, err := f.store.Enqueue(f.ctx, d)
		if err != nil {
			t.Errorf("enqueue %.60s: %v", p, err)
			continue
		}
		var same bool
		if err := f.pool.QueryRow(f.ctx, `SELECT payload = $2::jsonb FROM pgoutbox_message WHERE id = $1::bigint`, res.Message.ID, p).Scan(&same); err != nil || !same {
			t.Errorf("stored payload of %.60s differs (%v)", p, err)
		}
	}
}

func TestEnqueueDedupeReturnsStoredMessage(t *testing.T) {
	f := newFixture(t)
	d := draft(`{"a": 1, "b": [1, 2]}`)
	d.DedupeKey = "event-1"
	first, err := f.store.Enqueue(f.ctx, d)
	if err != nil || first.Deduplicated {
		t.Fatalf("first enqueue: %+v %v", first, err)
	}
	// The same draft, serialised differently (key order, spacing), is the same draft.
	again := d
	again.Payload = json.RawMessage(`{"b":[1,2],"a":1}`)
	again.MaxAttempts = outbox.DefaultMaxAttempts // 0 and the default are the same
	second, err := f.store.Enqueue(f.ctx, again)
	if err != nil {
		t.Fatal(err)
	}
	if !second.Deduplicated || second.Message.ID != first.Message.ID || !messagesEqual(second.Message, first.Message) {
		t.Errorf("second enqueue = %+v, want the first message deduplicated", second)
	}
	if n := f.count("true"); n != 1 {
		t.Errorf("%d rows, want 1", n)
	}
}

func TestEnqueueDedupeConflict(t *testing.T) {
	f := newFixture(t)
	at := time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC)
	d := draft(`{"a": 1}`)
	d.DedupeKey = "event-1"
	d.AvailableAt = at
	first := f.enqueue(f.store, d)
	before := f.snapshot()

	cases := []struct {
		field string
		edit  func(*outbox.Draft)
	}{
		{"payload", func(d *outbox.Draft) { d.Payload = json.RawMessage(`{"a": 2}`) }},
		{"max_attempts", func(d *outbox.Draft) { d.MaxAttempts = 3 }},
		{"available_at", func(d *outbox.Draft) { d.AvailableAt = at.Add(time.Second) }},
	}
	for _, c := range cases {
		other := d
		c.edit(&other)
		_, err := f.store.Enqueue(f.ctx, other)
		if !errors.Is(err, outbox.ErrConflict) {
			t.Fatalf("%s: err = %v, want ErrConflict", c.field, err)
		}
		var cerr *outbox.ConflictError
		if !errors.As(err, &cerr) || cerr.Field != c.field || cerr.Existing.ID != first.ID || cerr.DedupeKey != "event-1" {
			t.Errorf("%s: conflict error %+v", c.field, cerr)
		}
	}
	// A draft that leaves AvailableAt zero does not contest the stored one.
	same := d
	same.AvailableAt = time.Time{}
	if res, err := f.store.Enqueue(f.ctx, same); err != nil || !res.Deduplicated {
		t.Errorf("draft without AvailableAt: %+v %v", res, err)
	}
	if after := f.snapshot(); after != before {
		t.Errorf("a conflicting enqueue changed the table")
	}
}

func TestEnqueueDedupeKeyIsPerLaneAndTarget(t *testing.T) {
	f := newFixture(t)
	ids := map[string]bool{}
	for _, lt := range [][2]string{
		{outbox.LaneCanonical, outbox.TargetProtocolProjector},
		{outbox.LaneCanonical, outbox.TargetProtocolFanout},
		{outbox.LaneProtocolReplay, outbox.TargetProtocolProjector},
	} {
		res, err := f.store.Enqueue(f.ctx, outbox.Draft{Lane: lt[0], Target: lt[1], Payload: json.RawMessage(`1`), DedupeKey: "k"})
		if err != nil || res.Deduplicated {
			t.Fatalf("%v: %+v %v", lt, res, err)
		}
		ids[res.Message.ID] = true
	}
	if len(ids) != 3 {
		t.Errorf("got %d distinct messages, want 3", len(ids))
	}
}

// The key stays taken for as long as its row exists, delivered or dead.
func TestEnqueueDedupeHoldsAfterDelivery(t *testing.T) {
	f := newFixture(t)
	d := draft(`{}`)
	d.DedupeKey = "once"
	first := f.enqueue(f.store, d)
	got := f.claim(f.store, claimReq(1, time.Minute, "c"))
	if ok, err := f.store.Ack(f.ctx, got[0].ID, got[0].ClaimToken); err != nil || !ok {
		t.Fatalf("ack: %v %v", ok, err)
	}
	res, err := f.store.Enqueue(f.ctx, d)
	if err != nil || !res.Deduplicated || res.Message.ID != first.ID || res.Message.Status != outbox.StatusDelivered {
		t.Errorf("re-enqueue after delivery: %+v %v", res, err)
	}
}

func jsonEqual(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

func messagesEqual(a, b outbox.Message) bool {
	return a.ID == b.ID && a.Lane == b.Lane && a.Target == b.Target && string(a.Payload) == string(b.Payload) &&
		a.DedupeKey == b.DedupeKey && a.Status == b.Status && a.AvailableAt.Equal(b.AvailableAt) &&
		a.AttemptCount == b.AttemptCount && a.MaxAttempts == b.MaxAttempts && a.ClaimedBy == b.ClaimedBy &&
		a.ClaimToken == b.ClaimToken && a.LeaseExpiresAt.Equal(b.LeaseExpiresAt) && a.LastError == b.LastError &&
		a.CreatedAt.Equal(b.CreatedAt) && a.UpdatedAt.Equal(b.UpdatedAt)
}
