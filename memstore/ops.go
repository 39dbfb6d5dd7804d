package memstore

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/pgoutbox/pgoutbox/internal/msgid"
	"github.com/pgoutbox/pgoutbox/internal/validate"
	"github.com/pgoutbox/pgoutbox/outbox"
)

// Redrive sends dead letters back to pending, as outbox.PostgresStore.Redrive.
func (s *Store) Redrive(_ context.Context, r outbox.RedriveRequest) (outbox.RedriveResult, error) {
	if err := r.Validate(); err != nil {
		return outbox.RedriveResult{}, fmt.Errorf("memstore: redrive: %w", err)
	}
	byIDs := len(r.IDs) > 0
	st := s.st
	st.mu.Lock()
	defer st.mu.Unlock()
	now := st.now()
	redrive := func(m *row) {
		m.Status, m.AttemptCount, m.AvailableAt, m.UpdatedAt, m.OrderingKeyReleased = outbox.StatusPending, 0, now, now, false
	}
	var res outbox.RedriveResult
	if byIDs {
		for _, id := range msgid.Unique(r.IDs) {
			key, ok := msgid.Parse(id)
			m := st.rows[key]
			if !ok || m == nil || m.scope != s.scope || m.Status != outbox.StatusDeadLetter {
				res.NotDead = append(res.NotDead, id)
				continue
			}
			redrive(m)
			res.Redriven++
		}
		return res, nil
	}
	for _, m := range st.rows {
		if m.scope == s.scope && m.Status == outbox.StatusDeadLetter && m.Lane == r.Lane && m.Target == r.Target &&
			strings.Contains(m.LastError, r.ErrorContains) {
			redrive(m)
			res.Redriven++
		}
	}
	return res, nil
}

func (s *Store) purgeable(r outbox.PurgeRequest, now time.Time) []int64 {
	statuses := r.Statuses()
	cutoff := now.Add(-r.OlderThan.Truncate(time.Microsecond))
	var ids []int64
	for id, m := range s.st.rows {
		if m.scope == s.scope && slices.Contains(statuses, m.Status) && m.UpdatedAt.Before(cutoff) {
			ids = append(ids, id)
		}
	}
	return ids
}

// Purge deletes finished messages, as outbox.PostgresStore.Purge.
func (s *Store) Purge(ctx context.Context, r outbox.PurgeRequest) (int64, error) {
	if err := r.Validate(); err != nil {
		return 0, fmt.Errorf("memstore: purge: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("memstore: purge: stopped after deleting 0 messages: %w", err)
	}
	st := s.st
	st.mu.Lock()
	defer st.mu.Unlock()
	ids := s.purgeable(r, st.now())
	for _, id := range ids {
		delete(st.rows, id)
	}
	if r.Progress != nil {
		r.Progress(int64(len(ids)))
	}
	return int64(len(ids)), nil
}

// PurgeCount says how many messages Purge would delete now.
func (s *Store) PurgeCount(_ context.Context, r outbox.PurgeRequest) (int64, error) {
	if err := r.Validate(); err != nil {
		return 0, fmt.Errorf("memstore: purge: %w", err)
	}
	s.st.mu.Lock()
	defer s.st.mu.Unlock()
	return int64(len(s.purgeable(r, s.st.now()))), nil
}

// Stats returns per (lane, target) counts, as outbox.PostgresStore.Stats.
func (s *Store) Stats(_ context.Context, withDelivered bool) ([]outbox.Stats, error) {
	st := s.st
	st.mu.Lock()
	defer st.mu.Unlock()
	now := st.now()
	byKey := map[[2]string]*outbox.Stats{}
	for _, m := range st.rows {
		if m.scope != s.scope || (m.Status == outbox.StatusDelivered && !withDelivered) {
			continue
		}
		k := [2]string{m.Lane, m.Target}
		x := byKey[k]
		if x == nil {
			x = &outbox.Stats{Lane: m.Lane, Target: m.Target}
			byKey[k] = x
		}
		switch m.Status {
		case outbox.StatusPending:
			x.Pending++
			if !m.AvailableAt.After(now) {
				x.Due++
				x.OldestDueAge = max(x.OldestDueAge, now.Sub(m.AvailableAt))
			}
		case outbox.StatusClaimed:
			x.Claimed++
			if !m.LeaseExpiresAt.After(now) {
				x.ExpiredLeases++
			}
		case outbox.StatusDeadLetter:
			x.DeadLetters++
		case outbox.StatusDelivered:
			x.Delivered++
		}
	}
	out := make([]outbox.Stats, 0, len(byKey))
	for _, x := range byKey {
		if !withDelivered {
			x.Delivered = -1
		}
		out = append(out, *x)
	}
	slices.SortFunc(out, func(a, b outbox.Stats) int {
		if c := strings.Compare(a.Lane, b.Lane); c != 0 {
			return c
		}
		return strings.Compare(a.Target, b.Target)
	})
	return out, nil
}

// ReleaseOrderingKey lets an ordering key held by a dead letter move on, as
// outbox.PostgresStore.ReleaseOrderingKey.
func (s *Store) ReleaseOrderingKey(_ context.Context, lane, target, key string) (int, error) {
	if err := validate.ReleaseKey(lane, target, key); err != nil {
		return 0, fmt.Errorf("memstore: release ordering key: %w", err)
	}
	st := s.st
	st.mu.Lock()
	defer st.mu.Unlock()
	now := st.now()
	n := 0
	for _, m := range st.rows {
		if m.scope == s.scope && m.Lane == lane && m.Target == target && m.OrderingKey == key &&
			m.Status == outbox.StatusDeadLetter && !m.OrderingKeyReleased {
			m.OrderingKeyReleased, m.UpdatedAt = true, now
			n++
		}
	}
	return n, nil
}
