package benchkit

import (
	"context"
	"strconv"
	"strings"
	"testing"

	"github.com/pgoutbox/pgoutbox/outbox"
	"github.com/pgoutbox/pgoutbox/relay"
)

func msg(id int64, key string) outbox.Message {
	return outbox.Message{ID: strconv.FormatInt(id, 10), OrderingKey: key}
}

// The check fails on what ordered delivery forbids: a second message of a
// key in a handler while the first is, and a key's messages out of id
// order. Unkeyed messages and other keys are not its business.
func TestOrderCheck(t *testing.T) {
	c := NewOrderCheck()
	c.Start(msg(1, "a"))
	c.Start(msg(2, "b"))
	c.Start(msg(3, ""))
	c.Start(msg(4, ""))
	c.Done(msg(1, "a"))
	c.Start(msg(5, "a"))
	c.Done(msg(5, "a"))
	c.Done(msg(2, "b"))
	if err := c.Err(); err != nil {
		t.Fatalf("in-order delivery failed the check: %v", err)
	}

	c.Start(msg(7, "b"))
	c.Start(msg(8, "b"))
	if err := c.Err(); err == nil || !strings.Contains(err.Error(), `key "b": message 8 handed out while an earlier one was in a handler`) {
		t.Errorf("two of a key at once: %v", err)
	}

	c = NewOrderCheck()
	c.Start(msg(9, "a"))
	c.Done(msg(9, "a"))
	c.Start(msg(6, "a"))
	if err := c.Err(); err == nil || !strings.Contains(err.Error(), `key "a": message 6 handed out after message 9`) {
		t.Errorf("out of order: %v", err)
	}
}

// Keyed drafts come message-major, so enqueued in order each key's ids
// follow its messages' order; KeyName sorts as the numbers do.
func TestKeyedDrafts(t *testing.T) {
	d := KeyedDrafts(3, 2)
	var keys []string
	for _, x := range d {
		keys = append(keys, x.OrderingKey)
	}
	if got, want := strings.Join(keys, ","), "key-0000000,key-0000001,key-0000002,key-0000000,key-0000001,key-0000002"; got != want {
		t.Errorf("keys %s, want %s", got, want)
	}
	if KeyName(9) >= KeyName(10) {
		t.Errorf("KeyName(9) = %s sorts after KeyName(10) = %s", KeyName(9), KeyName(10))
	}
}

// The keyed burn-down delivers every message, one per key at a time and in
// order (its check would fail the run otherwise), with the same accounting
// as the unkeyed one.
func TestBurnDownKeyed(t *testing.T) {
	ctx := context.Background()
	h := openHarness(t)
	for _, mode := range []relay.Mode{relay.ModeClaim, relay.ModeLock} {
		const keys, perKey = 40, 15
		res, err := h.BurnDownKeyed(ctx, keys, perKey, 2, 16, mode)
		if err != nil {
			t.Fatalf("mode %v: %v", mode, err)
		}
		if n := int64(keys * perKey); res.Enqueued != n || res.Delivered != n || res.Messages != n || res.PerSec <= 0 {
			t.Fatalf("mode %v: result %+v", mode, res)
		}
		if !strings.Contains(res.Variant, "40 keys x 15") {
			t.Errorf("variant %q", res.Variant)
		}
		store, err := outbox.NewPostgresStore(h.Pool).Scoped(res.Scope)
		if err != nil {
			t.Fatal(err)
		}
		stats, err := store.Stats(ctx, true)
		if err != nil {
			t.Fatal(err)
		}
		if len(stats) != 1 || stats[0].Pending+stats[0].Claimed+stats[0].DeadLetters != 0 || stats[0].Delivered != keys*perKey {
			t.Errorf("mode %v: stats after the drain %+v, want all %d delivered", mode, stats, keys*perKey)
		}
	}
}

// DrainUntil stops once the messages it counts are handled, and reports
// the others it handled on the way.
func TestDrainUntilCountsSome(t *testing.T) {
	ctx := context.Background()
	h := openHarness(t)
	store, err := outbox.NewPostgresStore(h.Pool, outbox.WithNotify(false)).Scoped("drain-until")
	if err != nil {
		t.Fatal(err)
	}
	d := KeyedDrafts(20, 5)
	for i := range 200 {
		d = append(d, outbox.Draft{Lane: lane, Target: target, OrderingKey: "slow", Payload: payload(int64(i))})
	}
	if err := FillDrafts(ctx, store, d); err != nil {
		t.Fatal(err)
	}
	res, err := DrainUntil(ctx, store, DrainConfig{
		Total: 100, Relays: 1, Concurrency: 8, Mode: relay.ModeClaim,
		Counts: func(m outbox.Message) bool { return m.OrderingKey != "slow" }, Check: NewOrderCheck(),
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Messages != 100 || res.Delivered < 100 || res.Delivered >= 300 {
		t.Errorf("result %+v: want 100 counted and fewer than all 300 delivered", res)
	}
}

// Plans from the log lose auto_explain's query text, so that an excerpt of
// a long statement's plan shows the plan.
func TestParsePlansDropsTheQueryText(t *testing.T) {
	log := "2026-11-30 20:08:06.084 UTC [16059] LOG:  duration: 3776.296 ms  plan:\n" +
		"\tQuery Text: -- name: MessageClaim :many\n\tWITH RECURSIVE clock AS (\n\t    SELECT 1\n\t)\n" +
		"\tSort  (cost=1.00..2.00 rows=1 width=8) (actual rows=31 loops=1)\n\t  ->  Seq Scan on t  (cost=0.00..1.00 rows=1 width=8)\n" +
		"2026-11-30 20:08:07.000 UTC [16059] LOG:  something else\n"
	plans := parsePlans([]byte(log))
	if len(plans) != 1 || plans[0].Millis != 3776.296 {
		t.Fatalf("plans %+v", plans)
	}
	if want := "Sort  (cost=1.00..2.00 rows=1 width=8) (actual rows=31 loops=1)\n  ->  Seq Scan on t  (cost=0.00..1.00 rows=1 width=8)"; plans[0].Text != want {
		t.Errorf("plan text:\n%s\nwant:\n%s", plans[0].Text, want)
	}
	if got := WithoutQueryText("Sort\n  ->  Seq Scan"); got != "Sort\n  ->  Seq Scan" {
		t.Errorf("costless plan changed: %q", got)
	}
}
