package integration

import (
	"errors"
	"testing"
	"time"

	"github.com/pgoutbox/pgoutbox/outbox"
)

func TestListFiltersByStatusOldestFirst(t *testing.T) {
	f := newFixture(t)
	var ids []string
	for i := range 4 {
		ids = append(ids, f.enqueue(f.store, draft(itoa(i))).ID)
	}
	got := f.claim(f.store, claimReq(2, time.Minute, "c")) // ids[0], ids[1]
	if ok, err := f.store.Ack(f.ctx, got[0].ID, got[0].ClaimToken); err != nil || !ok {
		t.Fatal(ok, err)
	}
	want := map[outbox.Status][]string{
		"":                      ids,
		outbox.StatusPending:    ids[2:],
		outbox.StatusClaimed:    ids[1:2],
		outbox.StatusDelivered:  ids[:1],
		outbox.StatusDeadLetter: nil,
	}
	for status, wantIDs := range want {
		list, err := f.store.List(f.ctx, outbox.ListFilter{Status: status})
		if err != nil {
			t.Fatal(err)
		}
		if len(list) != len(wantIDs) {
			t.Errorf("status %q: %d messages, want %d", status, len(list), len(wantIDs))
			continue
		}
		for i := range list {
			if list[i].ID != wantIDs[i] || (status != "" && list[i].Status != status) {
				t.Errorf("status %q: [%d] = %s (%s), want %s", status, i, list[i].ID, list[i].Status, wantIDs[i])
			}
		}
	}
	if list, _ := f.store.List(f.ctx, outbox.ListFilter{Limit: 3}); len(list) != 3 || list[0].ID != ids[0] {
		t.Errorf("limit 3: %d messages", len(list))
	}
}

func TestListIsNeverUnbounded(t *testing.T) {
	f := newFixture(t)
	// Fill past both limits with the store's own enqueue in one transaction.
	tx, err := f.pool.Begin(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := range outbox.MaxListLimit + 5 {
		if _, err := f.store.WithTx(tx).Enqueue(f.ctx, draft(itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(f.ctx); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ limit, want int }{
		{0, outbox.DefaultListLimit}, {1 << 30, outbox.MaxListLimit}, {outbox.MaxListLimit + 1, outbox.MaxListLimit}, {7, 7},
	} {
		list, err := f.store.List(f.ctx, outbox.ListFilter{Limit: c.limit})
		if err != nil || len(list) != c.want {
			t.Errorf("limit %d: %d messages (%v), want %d", c.limit, len(list), err, c.want)
		}
	}
}

func TestListRejectsInvalidFilters(t *testing.T) {
	f := newFixture(t)
	for _, c := range []struct {
		filter outbox.ListFilter
		field  string
	}{
		{outbox.ListFilter{Limit: -1}, "limit"},
		{outbox.ListFilter{Status: "done"}, "status"},
		{outbox.ListFilter{Status: "Pending"}, "status"},
	} {
		_, err := f.store.List(f.ctx, c.filter)
		var verr *outbox.ValidationError
		if !errors.Is(err, outbox.ErrValidation) || !errors.As(err, &verr) || verr.Field != c.field {
			t.Errorf("%+v: %v, want invalid %s", c.filter, err, c.field)
		}
	}
}

func TestGetUnknownIsNotFound(t *testing.T) {
	f := newFixture(t)
	for _, id := range []string{"12345", "abc", "-1", "0"} {
		if _, err := f.store.Get(f.ctx, id); !errors.Is(err, outbox.ErrNotFound) {
			t.Errorf("get %q: %v, want ErrNotFound", id, err)
		}
	}
	if _, err := f.store.Get(f.ctx, " "); !errors.Is(err, outbox.ErrValidation) {
		t.Errorf("get blank: %v, want ErrValidation", err)
	}
}
