package storetest

import (
	"errors"
	"testing"
	"time"

	"github.com/pgoutbox/pgoutbox/outbox"
)

// TestScopesAreIsolated checks that a scope never sees, claims, acks or dedupes against another scope's rows.
func TestScopesAreIsolated(t *testing.T, h Harness) {
	e := start(t, h)
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
}

// TestIDsHaveOneForm checks that a message id is accepted only in the form
// the store issued it: "+7" and "007" name no message, in Get, Ack, Nack and
// List paging alike.
func TestIDsHaveOneForm(t *testing.T, h Harness) {
	e := start(t, h)
	m := e.enqueue(e.s, draft(`{}`))
	got := e.claim(e.s, req(1, time.Minute))
	for _, other := range []string{"+" + m.ID, "0" + m.ID, "00" + m.ID, " " + m.ID} {
		if _, err := e.s.Get(e.ctx, other); !errors.Is(err, outbox.ErrNotFound) {
			e.Errorf("Get(%q): %v, want ErrNotFound", other, err)
		}
		if ok, err := e.s.Ack(e.ctx, other, got[0].ClaimToken); err != nil || ok {
			e.Errorf("Ack(%q) = %v %v, want false", other, ok, err)
		}
		if out, err := e.s.Nack(e.ctx, other, got[0].ClaimToken, "x", time.Time{}); err != nil || out != outbox.NackLostClaim {
			e.Errorf("Nack(%q) = %v %v, want lost claim", other, out, err)
		}
		_, err := e.s.List(e.ctx, outbox.ListFilter{AfterID: other})
		wantField(e.T, err, "after_id")
	}
	if back := e.get(m.ID); back.Status != outbox.StatusClaimed {
		e.Errorf("a malformed id changed the message: %+v", back)
	}
}
