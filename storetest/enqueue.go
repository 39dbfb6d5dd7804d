package storetest

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/pgoutbox/pgoutbox/outbox"
)

// TestEnqueueThenGet checks that a stored message comes back with its defaults, and an unknown id is ErrNotFound.
func TestEnqueueThenGet(t *testing.T, h Harness) {
	e := start(t, h)
	m := e.enqueue(e.s, draft(`{"a":[1,2]}`))
	got := e.get(m.ID)
	if got.Status != outbox.StatusPending || got.AttemptCount != 0 || got.MaxAttempts != outbox.DefaultMaxAttempts ||
		!got.AvailableAt.Equal(e.clk.Now()) || !got.CreatedAt.Equal(e.clk.Now()) || got.ClaimToken != "" {
		e.Errorf("stored %+v", got)
	}
	if _, err := e.s.Get(e.ctx, "999999"); !errors.Is(err, outbox.ErrNotFound) {
		e.Errorf("unknown id: %v", err)
	}
}

// TestInvalidDraftsWriteNothing checks that every refused draft names its field and writes nothing.
func TestInvalidDraftsWriteNothing(t *testing.T, h Harness) {
	e := start(t, h)
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
}

// TestDedupe checks that the same draft under a dedupe key returns the holder; a different one is ErrConflict naming the field.
func TestDedupe(t *testing.T, h Harness) {
	e := start(t, h)
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
}

// TestEnqueueManyIsAtomic checks that a batch deduplicates within itself, and a conflicting batch writes nothing.
func TestEnqueueManyIsAtomic(t *testing.T, h Harness) {
	e := start(t, h)
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
}

// TestEnqueueReturnsTheStoredMessage checks that Enqueue and EnqueueMany,
// with and without dedupe keys, return each message exactly as Get reads it
// back: every field, the payload as the store keeps it (jsonb drops
// whitespace and reorders keys) and the times as stored.
func TestEnqueueReturnsTheStoredMessage(t *testing.T, h Harness) {
	e := start(t, h)
	full := draft(`{"b": [1, 2.50],  "a": "\u00e9"}`)
	full.MaxAttempts = 3
	full.AvailableAt = e.clk.Now().Add(90 * time.Second).Add(1500 * time.Nanosecond)
	if h.Features.OrderingKeys {
		full.OrderingKey = "key"
	}
	if h.Features.Headers {
		full.Headers = map[string]string{"content-type": "application/json"}
	}
	withKey := func(d outbox.Draft, k string) outbox.Draft {
		d.DedupeKey = k
		return d
	}
	var got []outbox.Message
	for _, d := range []outbox.Draft{full, withKey(full, "one"), draft(`2`)} {
		got = append(got, e.enqueue(e.s, d))
	}
	for _, batch := range [][]outbox.Draft{
		{full, draft(` [ 3 ] `)},
		{withKey(full, "many"), draft(`4`), withKey(draft(`5`), "other")},
	} {
		res, err := e.s.EnqueueMany(e.ctx, batch)
		if err != nil || len(res) != len(batch) {
			e.Fatalf("enqueue many: %+v %v", res, err)
		}
		for _, r := range res {
			got = append(got, r.Message)
		}
	}
	for i, m := range got {
		if diff := messageDiff(m, e.get(m.ID)); diff != "" {
			e.Errorf("message %d (%s): returned and stored differ in %s", i, m.ID, diff)
		}
	}
	if full.Headers != nil {
		// The message must not share the draft's map.
		full.Headers["content-type"] = "changed"
		if got[0].Headers["content-type"] != "application/json" {
			e.Errorf("the returned headers changed with the draft's: %v", got[0].Headers)
		}
	}
}

// messageDiff names the fields in which a and b differ ("" when none):
// every field of outbox.Message, times compared as instants.
func messageDiff(a, b outbox.Message) string {
	va, vb := reflect.ValueOf(a), reflect.ValueOf(b)
	var diff []string
	for i := range va.NumField() {
		fa, fb := va.Field(i).Interface(), vb.Field(i).Interface()
		if ta, ok := fa.(time.Time); ok {
			if !ta.Equal(fb.(time.Time)) {
				diff = append(diff, va.Type().Field(i).Name)
			}
			continue
		}
		if !reflect.DeepEqual(fa, fb) {
			diff = append(diff, va.Type().Field(i).Name)
		}
	}
	return strings.Join(diff, ", ")
}
