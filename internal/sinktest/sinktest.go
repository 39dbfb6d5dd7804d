// Package sinktest runs the tests every broker sink shares. The fault test
// (Run): a relay delivers through the sink while producers enqueue, the
// broker is stopped and started again mid-run, and the ledger compares what
// the store marked delivered with what the broker holds. The end-to-end test
// (RunEndToEnd): producers enqueue drafts with headers and ordering keys
// inside their spans, a relay delivers them through the sink with
// concurrency, and every message the broker holds must carry the producer's
// headers and trace context, in its ordering key's enqueue order.
//
// The store is the in-memory one (package memstore): it has the same
// semantics as PostgreSQL, and what is under test here is the sink and the
// broker, not the store.
package sinktest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pgoutbox/pgoutbox/memstore"
	"github.com/pgoutbox/pgoutbox/outbox"
	"github.com/pgoutbox/pgoutbox/relay"
)

// Broker is the broker as the fault run drives and inspects it.
type Broker struct {
	// Stop stops the broker (the process, or the cluster) mid-run.
	Stop func() error
	// Start starts it again with the same address and data.
	Start func() error
	// Holds returns how many copies of each message id the broker holds,
	// from the start of the run (counts accumulate across calls).
	Holds func(ctx context.Context) (map[string]int, error)
}

// Fault configures a run.
type Fault struct {
	Handler relay.Handler
	Broker  Broker
	// Messages is how many messages the producers enqueue, spread over
	// about three seconds around the outage. Default 600.
	Messages int
	// Downtime is how long the broker stays down. Default 2s.
	Downtime time.Duration
	// LostConfirmEvery discards the sink's success for one message in this
	// many (its first confirmed publish is reported to the relay as a
	// failure), as when a confirm arrives but the relay's ack never reaches
	// the store: the relay publishes it again. 0 disables it.
	LostConfirmEvery int
}

// Ledger is the outcome of a run: one row of RELIABILITY.md.
type Ledger struct {
	Committed int // enqueues that returned success
	Delivered int // messages the store marked delivered at the end
	AtBroker  int // distinct committed messages the broker holds
	// Duplicated counts extra copies at the broker (copies beyond one).
	Duplicated int
	// Republished counts publishes of messages the broker had already
	// confirmed (lost confirms and retries after a broker restart).
	Republished int
	Lost        int // committed, not at the broker
	// AckedUnconfirmed counts messages the store marked delivered that the
	// broker did not hold: acks without a confirm. Checked when the broker
	// stopped and at the end.
	AckedUnconfirmed int
	// AckedBeforeStop is how many messages were acked when the broker
	// stopped; all of them must be at the broker after its restart.
	AckedBeforeStop int
	HandlerCalls    int64
	HandlerErrors   int64
	// Recovery runs from the broker's restart to the delivery of the last
	// committed message.
	Recovery time.Duration
}

// Row formats the ledger as a RELIABILITY.md table row after fault and how:
// committed, delivered, at the broker, duplicated, lost, acked without a
// confirm, failed publishes, time to recover.
func (l Ledger) Row(fault, how string) string {
	return fmt.Sprintf("RELIABILITY | %s | %s | %d | %d | %d | %d (%d republished) | %d | %d (of %d acked at the stop) | %d | %s |",
		fault, how, l.Committed, l.Delivered, l.AtBroker, l.Duplicated, l.Republished, l.Lost, l.AckedUnconfirmed, l.AckedBeforeStop,
		l.HandlerErrors, l.Recovery.Round(10*time.Millisecond))
}

const (
	lane   = "sinks"
	target = "fault"
)

// Run runs the fault test and fails t on any message acked without a
// confirm, lost, dead-lettered or left undelivered. It returns the ledger
// for the caller's own checks (duplicates differ by broker).
func Run(t *testing.T, f Fault) Ledger {
	t.Helper()
	if f.Messages == 0 {
		f.Messages = 600
	}
	if f.Downtime == 0 {
		f.Downtime = 2 * time.Second
	}
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	store := memstore.New()
	var (
		l          Ledger
		calls      atomic.Int64
		errs       atomic.Int64
		mu         sync.Mutex
		confirmed  = map[string]bool{} // ids the sink returned nil for
		republish  int
		lostOnce   = map[string]bool{}
		committed  = map[string]bool{}
		enqueueSeq atomic.Int64
	)
	handler := func(ctx context.Context, m outbox.Message) error {
		calls.Add(1)
		err := f.Handler(ctx, m)
		if err != nil {
			errs.Add(1)
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		if confirmed[m.ID] {
			republish++
		}
		confirmed[m.ID] = true
		var n int
		_, _ = fmt.Sscan(string(m.Payload), &n)
		if f.LostConfirmEvery > 0 && n%f.LostConfirmEvery == 0 && !lostOnce[m.ID] {
			lostOnce[m.ID] = true
			return errors.New("sinktest: confirm lost on its way to the store")
		}
		return nil
	}
	r, err := relay.New(store, relay.Config{
		Lane: lane, Target: target, Handler: handler, Concurrency: 16, Wakeups: store,
		PollInterval: 50 * time.Millisecond, Lease: 10 * time.Second,
		// Short retries, so recovery is measured in the broker's time, not
		// the backoff's.
		Backoff:      relay.ExponentialBackoff(50*time.Millisecond, 500*time.Millisecond),
		DrainTimeout: 5 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stopRelay := context.WithCancel(ctx)
	relayDone := make(chan error, 1)
	go func() { relayDone <- r.Run(runCtx) }()
	stop := sync.OnceValue(func() error { stopRelay(); return <-relayDone })
	defer func() { _ = stop() }()

	// Producers: four, each enqueuing its share at a steady pace for about
	// three seconds, so messages keep arriving before, during and after the
	// outage.
	const producers = 4
	var prod sync.WaitGroup
	per := f.Messages / producers
	pace := 3 * time.Second / time.Duration(max(per, 1))
	for range producers {
		prod.Add(1)
		go func() {
			defer prod.Done()
			for range per {
				i := enqueueSeq.Add(1)
				d := outbox.Draft{Lane: lane, Target: target, Payload: json.RawMessage(fmt.Sprint(i)), MaxAttempts: 1000}
				res, err := store.Enqueue(ctx, d)
				if err != nil {
					t.Errorf("enqueue: %v", err)
					return
				}
				mu.Lock()
				committed[res.Message.ID] = true
				mu.Unlock()
				time.Sleep(pace)
			}
		}()
	}

	// The outage, one second into the run.
	time.Sleep(time.Second)
	if err := f.Broker.Stop(); err != nil {
		t.Fatalf("stopping the broker: %v", err)
	}
	ackedAtStop := delivered(ctx, t, store)
	l.AckedBeforeStop = len(ackedAtStop)
	time.Sleep(f.Downtime)
	if err := f.Broker.Start(); err != nil {
		t.Fatalf("starting the broker again: %v", err)
	}
	restarted := time.Now()
	holds, err := f.Broker.Holds(ctx)
	if err != nil {
		t.Fatalf("reading the broker after its restart: %v", err)
	}
	for id := range ackedAtStop {
		if holds[id] == 0 {
			l.AckedUnconfirmed++
			t.Errorf("message %s was acked before the broker stopped but is not at the broker after its restart", id)
		}
	}
	prod.Wait()
	mu.Lock()
	want := len(committed)
	mu.Unlock()
	for {
		got := delivered(ctx, t, store)
		if len(got) == want {
			l.Recovery = time.Since(restarted)
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("%d of %d committed messages delivered when the test ran out of time", len(got), want)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := stop(); err != nil {
		t.Errorf("relay: %v", err)
	}

	final := delivered(ctx, t, store)
	if holds, err = f.Broker.Holds(ctx); err != nil {
		t.Fatalf("reading the broker: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	l.Committed = len(committed)
	l.Delivered = len(final)
	l.Republished = republish
	l.HandlerCalls, l.HandlerErrors = calls.Load(), errs.Load()
	for id := range committed {
		n := holds[id]
		if n == 0 {
			l.Lost++
			continue
		}
		l.AtBroker++
		l.Duplicated += n - 1
	}
	for id := range final {
		if holds[id] == 0 {
			l.AckedUnconfirmed++
			t.Errorf("message %s is delivered in the store but not at the broker", id)
		}
	}
	for id := range holds {
		if !committed[id] {
			t.Errorf("the broker holds %s, which was never committed", id)
		}
	}
	if l.Lost > 0 {
		t.Errorf("%d committed messages never reached the broker", l.Lost)
	}
	dead, err := store.List(ctx, outbox.ListFilter{Status: outbox.StatusDeadLetter})
	if err != nil {
		t.Fatal(err)
	}
	if len(dead) > 0 {
		t.Errorf("%d messages dead-lettered: %s", len(dead), dead[0].LastError)
	}
	return l
}

// delivered returns the ids the store marked delivered.
func delivered(ctx context.Context, t *testing.T, store *memstore.Store) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	after := ""
	for {
		page, err := store.List(ctx, outbox.ListFilter{Status: outbox.StatusDelivered, Limit: outbox.MaxListLimit, AfterID: after})
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range page {
			out[m.ID] = true
		}
		if len(page) < outbox.MaxListLimit {
			return out
		}
		after = page[len(page)-1].ID
	}
}
