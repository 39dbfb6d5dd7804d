package integration

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pgoutbox/pgoutbox/outbox"
)

func (f *fixture) scoped(s *outbox.PostgresStore, scope string) *outbox.PostgresStore {
	f.t.Helper()
	v, err := s.Scoped(scope)
	if err != nil {
		f.t.Fatal(err)
	}
	return v
}

// A scoped view and the unscoped store are strangers: none sees, claims,
// acks, nacks or dedupes against the other's rows.
func TestScopesAreIsolated(t *testing.T) {
	f := newFixture(t)
	tenantA := f.scoped(f.store, "tenant-a")
	tenantB := f.scoped(f.store, "tenant-b")
	stores := map[string]*outbox.PostgresStore{"unscoped": f.store, "tenant-a": tenantA, "tenant-b": tenantB}

	// The same dedupe key in every scope makes three messages, not one.
	own := map[string]outbox.Message{}
	for name, s := range stores {
		d := draft(`{"scope": "` + name + `"}`)
		d.DedupeKey = "shared-key"
		res, err := s.Enqueue(f.ctx, d)
		if err != nil || res.Deduplicated {
			t.Fatalf("%s: enqueue %+v %v", name, res, err)
		}
		own[name] = res.Message
	}
	if n := f.count("dedupe_key = 'shared-key'"); n != 3 {
		t.Fatalf("%d rows for the shared key, want 3", n)
	}

	// Each sees only its own.
	for name, s := range stores {
		list, err := s.List(f.ctx, outbox.ListFilter{})
		if err != nil || len(list) != 1 || list[0].ID != own[name].ID {
			t.Errorf("%s lists %+v (%v)", name, list, err)
		}
		for other, m := range own {
			if other == name {
				continue
			}
			if _, err := s.Get(f.ctx, m.ID); !errors.Is(err, outbox.ErrNotFound) {
				t.Errorf("%s can get %s's message: %v", name, other, err)
			}
		}
	}

	// tenant-a claims only its own message.
	got := f.claim(tenantA, claimReq(10, time.Minute, "a"))
	if len(got) != 1 || got[0].ID != own["tenant-a"].ID {
		t.Fatalf("tenant-a claimed %+v", got)
	}
	held := got[0]
	// Neither another scope nor the unscoped store can ack or nack it, even
	// with its id and token.
	for _, name := range []string{"unscoped", "tenant-b"} {
		before := f.snapshot()
		if ok, err := stores[name].Ack(f.ctx, held.ID, held.ClaimToken); err != nil || ok {
			t.Errorf("%s acked tenant-a's message: %v %v", name, ok, err)
		}
		if out, err := stores[name].Nack(f.ctx, held.ID, held.ClaimToken, "x", time.Time{}); err != nil || out != outbox.NackLostClaim {
			t.Errorf("%s nacked tenant-a's message: %v %v", name, out, err)
		}
		if f.snapshot() != before {
			t.Errorf("%s changed the table with another scope's claim", name)
		}
	}
	if ok, err := tenantA.Ack(f.ctx, held.ID, held.ClaimToken); err != nil || !ok {
		t.Fatalf("tenant-a's own ack: %v %v", ok, err)
	}
	// The unscoped store's claim does not reach scoped rows either.
	got = f.claim(f.store, claimReq(10, time.Minute, "u"))
	if len(got) != 1 || got[0].ID != own["unscoped"].ID {
		t.Fatalf("unscoped claimed %+v", got)
	}
}

func TestScopedRejectsBadScopeIDs(t *testing.T) {
	f := newFixture(t)
	for _, s := range []string{"", "  ", "a\x00b", "tab\there", "new\nline", "bell\a", "\xff\xfe", strings.Repeat("s", outbox.MaxScopeBytes+1)} {
		v, err := f.store.Scoped(s)
		var verr *outbox.ValidationError
		if v != nil || !errors.As(err, &verr) || verr.Field != "scope" {
			t.Errorf("Scoped(%q) = %v, %v; want invalid scope", s, v, err)
		}
		if err := outbox.ValidateScope(s); !errors.Is(err, outbox.ErrValidation) {
			t.Errorf("ValidateScope(%q) = %v", s, err)
		}
	}
	for _, s := range []string{"t", "tenant/42", "ünïcode", strings.Repeat("s", outbox.MaxScopeBytes)} {
		if _, err := f.store.Scoped(s); err != nil {
			t.Errorf("Scoped(%q): %v", s, err)
		}
	}
	a := f.scoped(f.store, "a")
	if _, err := a.Scoped("b"); !errors.Is(err, outbox.ErrValidation) {
		t.Errorf("nested Scoped: %v, want ErrValidation", err)
	}
	if a.Scope() != "a" || f.store.Scope() != "" {
		t.Errorf("Scope() = %q / %q", a.Scope(), f.store.Scope())
	}
}

// WithTx keeps the scope; Scoped keeps the transaction.
func TestScopeAndTransactionCompose(t *testing.T) {
	f := newFixture(t)
	tx, err := f.pool.Begin(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	s := f.scoped(f.store, "t1").WithTx(tx)
	if _, err := s.Enqueue(f.ctx, draft(`{}`)); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(f.ctx); err != nil {
		t.Fatal(err)
	}
	if n := f.count("true"); n != 0 {
		t.Fatalf("rolled-back scoped enqueue left %d rows", n)
	}
	tx2, err := f.pool.Begin(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	res, err := f.scoped(f.store.WithTx(tx2), "t2").Enqueue(f.ctx, draft(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	if err := tx2.Commit(f.ctx); err != nil {
		t.Fatal(err)
	}
	var scope string
	if err := f.pool.QueryRow(f.ctx, "SELECT scope FROM pgoutbox_message WHERE id = $1::bigint", res.Message.ID).Scan(&scope); err != nil || scope != "t2" {
		t.Fatalf("scope %q (%v), want t2", scope, err)
	}
}
