package sinktest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/baggage"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/pgoutbox/pgoutbox/memstore"
	"github.com/pgoutbox/pgoutbox/outbox"
	"github.com/pgoutbox/pgoutbox/relay"
)

// Every end-to-end draft carries the header TenantHeader: Tenant, a
// producer's own header next to the trace context the store adds.
const (
	TenantHeader = "tenant"
	Tenant       = "acme"
)

// EndToEnd configures a run of the end-to-end test: producers, each in a
// span of its own, enqueue keyed and unkeyed drafts with headers on a store
// with a trace propagator, a relay delivers them through the sink with
// concurrency, and the messages the broker holds are checked one by one.
type EndToEnd struct {
	Handler relay.Handler
	// Read returns every message the broker holds, in the broker's order:
	// for each ordering key, its messages must come in the order the
	// broker keeps them (stream sequence, partition offset, queue order,
	// arrival order).
	Read func(ctx context.Context) ([]Received, error)
	// ExactlyOnce is set for brokers that deduplicate by message id: each
	// message must be held exactly once. Otherwise at least once.
	ExactlyOnce bool
	// Keys, PerKey and Unkeyed shape the load: Keys ordering keys of
	// PerKey messages each, and Unkeyed messages without a key. Defaults
	// 8, 25 and 40.
	Keys, PerKey, Unkeyed int
	// Concurrency is the relay's. Default 8.
	Concurrency int
	// LostConfirmEvery reports the sink's first success for one message in
	// this many (by its position in its key) to the relay as a failure, as
	// when the ack to the store is lost: the relay publishes it again, so
	// deduplication and the order of a republished message are exercised.
	// 0 disables it.
	LostConfirmEvery int
}

// Received is one message as the broker holds it.
type Received struct {
	// ID is the outbox message id the broker carries (Nats-Msg-Id,
	// pgoutbox-message-id, message-id, webhook-id).
	ID string
	// Headers are the message's headers at the broker, names as the
	// producer wrote them (lower case).
	Headers map[string]string
	Payload []byte
}

// Sent is one message a producer enqueued.
type Sent struct {
	ID          string
	OrderingKey string // "" for unkeyed messages
	Seq         int    // position among its key's messages, from 0
	TraceID     trace.TraceID
}

// Payload is the body of every end-to-end message.
type Payload struct {
	Key string `json:"key"`
	Seq int    `json:"seq"`
}

// Result is what a run sent and what the broker held, for a sink's own
// checks (the key a broker carries, its partitions).
type Result struct {
	Sent     map[string]Sent // by message id
	Received []Received
}

// Propagator is the W3C trace context and baggage, as the store and the
// relay are configured in a run.
func Propagator() propagation.TextMapPropagator {
	return propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
}

// KeyName is the name of ordering key i in a run.
func KeyName(i int) string { return fmt.Sprintf("key-%d", i) }

// RunEndToEnd runs the end-to-end test and fails t on any message the
// broker lacks, holds more often than allowed, holds without the producer's
// headers, trace context or baggage, or holds out of its key's enqueue order.
func RunEndToEnd(t *testing.T, e EndToEnd) Result {
	t.Helper()
	if e.Keys == 0 {
		e.Keys = 8
	}
	if e.PerKey == 0 {
		e.PerKey = 25
	}
	if e.Unkeyed == 0 {
		e.Unkeyed = 40
	}
	if e.Concurrency == 0 {
		e.Concurrency = 8
	}
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()

	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	defer func() { _ = tp.Shutdown(context.Background()) }()
	tracer := tp.Tracer("sinktest")

	var (
		lostMu sync.Mutex
		lost   = map[string]bool{}
	)
	handler := func(ctx context.Context, m outbox.Message) error {
		if err := e.Handler(ctx, m); err != nil || e.LostConfirmEvery == 0 {
			return err
		}
		var p Payload
		if err := json.Unmarshal(m.Payload, &p); err != nil {
			return relay.Permanent(fmt.Errorf("sinktest: payload %q: %w", m.Payload, err))
		}
		lostMu.Lock()
		defer lostMu.Unlock()
		if p.Seq%e.LostConfirmEvery == e.LostConfirmEvery-1 && !lost[m.ID] {
			lost[m.ID] = true
			return errors.New("sinktest: confirm lost on its way to the store")
		}
		return nil
	}
	store := memstore.New(memstore.WithPropagator(Propagator()))
	r, err := relay.New(store, relay.Config{
		Lane: lane, Target: "e2e", Handler: handler, Wakeups: store,
		Concurrency: e.Concurrency, PollInterval: 50 * time.Millisecond, Lease: 30 * time.Second,
		Backoff:        relay.ExponentialBackoff(50*time.Millisecond, time.Second),
		TracerProvider: tp, Propagator: Propagator(),
	})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stopRelay := context.WithCancel(ctx)
	relayDone := make(chan error, 1)
	go func() { relayDone <- r.Run(runCtx) }()
	stop := sync.OnceValue(func() error { stopRelay(); return <-relayDone })
	defer func() { _ = stop() }()

	// Producers: one per key, enqueuing its messages one by one in order,
	// and one enqueuing the unkeyed messages in a single batch; each in a
	// span of its own, with its own baggage, so a message carrying another
	// producer's trace context is caught too. They run while the relay
	// delivers.
	var (
		mu   sync.Mutex
		sent = map[string]Sent{}
		prod sync.WaitGroup
	)
	produce := func(key string) {
		defer prod.Done()
		member, err := baggage.NewMember("producer", producerName(key))
		if err != nil {
			t.Error(err)
			return
		}
		bag, err := baggage.New(member)
		if err != nil {
			t.Error(err)
			return
		}
		pctx, span := tracer.Start(baggage.ContextWithBaggage(ctx, bag), "produce "+producerName(key))
		defer span.End()
		tid := span.SpanContext().TraceID()
		n := e.PerKey
		if key == "" {
			n = e.Unkeyed
		}
		drafts := make([]outbox.Draft, n)
		for i := range drafts {
			body, err := json.Marshal(Payload{Key: key, Seq: i})
			if err != nil {
				t.Error(err)
				return
			}
			drafts[i] = outbox.Draft{Lane: lane, Target: "e2e", Payload: body, OrderingKey: key,
				Headers: map[string]string{TenantHeader: Tenant}}
		}
		var results []outbox.EnqueueResult
		if key == "" {
			if results, err = store.EnqueueMany(pctx, drafts); err != nil {
				t.Errorf("enqueue many: %v", err)
				return
			}
		} else {
			for _, d := range drafts {
				res, err := store.Enqueue(pctx, d)
				if err != nil {
					t.Errorf("enqueue %s: %v", key, err)
					return
				}
				results = append(results, res)
			}
		}
		mu.Lock()
		defer mu.Unlock()
		for i, res := range results {
			sent[res.Message.ID] = Sent{ID: res.Message.ID, OrderingKey: key, Seq: i, TraceID: tid}
		}
	}
	for i := range e.Keys {
		prod.Add(1)
		go produce(KeyName(i))
	}
	prod.Add(1)
	go produce("")
	prod.Wait()
	if t.Failed() {
		t.FailNow()
	}

	want := len(sent)
	for {
		got := delivered(ctx, t, store)
		if len(got) == want {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("%d of %d messages delivered when the test ran out of time", len(got), want)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := stop(); err != nil {
		t.Errorf("relay: %v", err)
	}
	received, err := e.Read(ctx)
	if err != nil {
		t.Fatalf("reading the broker: %v", err)
	}
	lostMu.Lock()
	republished := len(lost)
	lostMu.Unlock()
	if e.LostConfirmEvery > 0 && republished == 0 {
		t.Error("no confirm was lost, so the run did not exercise republishing")
	}
	check(t, e, sent, received)
	checkDeliverySpans(t, sent, spans.Ended())
	return Result{Sent: sent, Received: received}
}

func producerName(key string) string {
	if key == "" {
		return "unkeyed"
	}
	return key
}

// check compares what the broker holds with what was sent.
func check(t *testing.T, e EndToEnd, sent map[string]Sent, received []Received) {
	t.Helper()
	copies := map[string]int{}
	next := map[string]int{} // per key: the lowest seq the next message may have
	var bad int
	report := func(format string, args ...any) {
		t.Helper()
		if bad++; bad <= 20 {
			t.Errorf(format, args...)
		}
	}
	for _, m := range received {
		s, ok := sent[m.ID]
		if !ok {
			report("the broker holds message %q, which was never enqueued", m.ID)
			continue
		}
		copies[m.ID]++
		if got := m.Headers[TenantHeader]; got != Tenant {
			report("message %s: header %q is %q at the broker, want %q", m.ID, TenantHeader, got, Tenant)
		}
		tp := m.Headers["traceparent"]
		sc := trace.SpanContextFromContext(propagation.TraceContext{}.Extract(context.Background(), propagation.MapCarrier{"traceparent": tp}))
		if !sc.IsValid() {
			report("message %s: traceparent %q at the broker is not a valid W3C trace context", m.ID, tp)
		} else if got := sc.TraceID(); got != s.TraceID {
			report("message %s: traceparent carries trace %s, the producer's span is in trace %s", m.ID, got, s.TraceID)
		}
		bag, err := baggage.Parse(m.Headers["baggage"])
		if err != nil {
			report("message %s: baggage %q at the broker: %v", m.ID, m.Headers["baggage"], err)
		} else if got, want := bag.Member("producer").Value(), producerName(s.OrderingKey); got != want {
			report("message %s: baggage member producer is %q, want %q", m.ID, got, want)
		}
		var p Payload
		if err := json.Unmarshal(m.Payload, &p); err != nil || p != (Payload{Key: s.OrderingKey, Seq: s.Seq}) {
			report("message %s: payload %q at the broker, want key %q seq %d (%v)", m.ID, m.Payload, s.OrderingKey, s.Seq, err)
		}
		if s.OrderingKey == "" {
			continue
		}
		// In order: each message is the next of its key, or (at least
		// once) a repeat of the one before it, republished before the
		// relay handed out the next.
		low := next[s.OrderingKey]
		switch {
		case s.Seq == low:
			next[s.OrderingKey] = low + 1
		case s.Seq == low-1 && !e.ExactlyOnce:
		default:
			report("key %s: the broker holds message %s (enqueued #%d of the key) where #%d was due: out of enqueue order",
				s.OrderingKey, m.ID, s.Seq, low)
		}
	}
	var missing []string
	for id, s := range sent {
		switch n := copies[id]; {
		case n == 0:
			missing = append(missing, fmt.Sprintf("%s (key %q #%d)", id, s.OrderingKey, s.Seq))
		case n > 1 && e.ExactlyOnce:
			report("message %s is held %d times; the broker deduplicates, want once", id, n)
		}
	}
	if len(missing) > 0 {
		t.Errorf("%d of %d messages are not at the broker: %s", len(missing), len(sent), strings.Join(missing[:min(len(missing), 10)], ", "))
	}
	if bad > 20 {
		t.Errorf("... and %d more", bad-20)
	}
}

// checkDeliverySpans checks that the relay continued each producer's trace:
// every delivery span is in the trace of its message's producer.
func checkDeliverySpans(t *testing.T, sent map[string]Sent, spans []sdktrace.ReadOnlySpan) {
	t.Helper()
	seen := map[string]bool{}
	for _, sp := range spans {
		if sp.Name() != "pgoutbox.deliver" {
			continue
		}
		var id string
		for _, a := range sp.Attributes() {
			if a.Key == "pgoutbox.message.id" {
				id = a.Value.AsString()
			}
		}
		s, ok := sent[id]
		if !ok {
			t.Errorf("delivery span for unknown message %q", id)
			continue
		}
		seen[id] = true
		if got := sp.SpanContext().TraceID(); got != s.TraceID {
			t.Errorf("message %s: the relay's delivery span is in trace %s, the producer's in %s", id, got, s.TraceID)
		}
	}
	if len(seen) != len(sent) {
		t.Errorf("delivery spans for %d of %d messages", len(seen), len(sent))
	}
}
