package relay_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/pgoutbox/pgoutbox/memstore"
	"github.com/pgoutbox/pgoutbox/outbox"
	"github.com/pgoutbox/pgoutbox/relay"
)

// slowAnswers is a memstore whose claims and locks answer late, as on a busy
// server: the statement has read the table, but its result arrives later.
type slowAnswers struct {
	*memstore.Store
	delay time.Duration
}

func (s slowAnswers) ClaimAndAck(ctx context.Context, r outbox.ClaimRequest, acks []outbox.Receipt) ([]outbox.Message, []bool, error) {
	msgs, acked, err := s.Store.ClaimAndAck(ctx, r, acks)
	time.Sleep(s.delay)
	return msgs, acked, err
}

// A message that falls due while an idle relay's claim is on its way back
// is handled when due, not at the next poll (an hour here): the relay asks
// when the next message falls due before it claims. Asked after the claim,
// the message was neither claimed (not yet due when the claim read the
// table) nor scheduled (due by the time of the question). Lock mode, which
// shares the rule, is tested on PostgreSQL (integration, wakeup_test.go).
func TestMessageFallingDueDuringAClaimIsNotLeftForThePoll(t *testing.T) {
	mem := memstore.New()
	store := slowAnswers{Store: mem, delay: 400 * time.Millisecond}
	handled := make(chan time.Time, 1)
	r, err := relay.New(store, relay.Config{
		Lane: "l", Target: "t", Wakeups: mem, PollInterval: time.Hour,
		Handler: func(context.Context, outbox.Message) error { handled <- time.Now(); return nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})
	time.Sleep(time.Second) // the first claim found nothing; the relay sleeps

	// The wake-up's claim reads the table before the message is due
	// and answers after it is.
	sent := time.Now()
	if _, err := mem.Enqueue(t.Context(), outbox.Draft{
		Lane: "l", Target: "t", Payload: json.RawMessage(`{}`), AvailableAt: sent.Add(200 * time.Millisecond),
	}); err != nil {
		t.Fatal(err)
	}
	select {
	case at := <-handled:
		t.Logf("handled %s after enqueue", at.Sub(sent).Round(time.Millisecond))
	case <-time.After(30 * time.Second):
		t.Fatal("a message that fell due during a claim waited for the hourly poll")
	}
}
