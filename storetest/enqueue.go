package storetest

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

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
