package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/pgoutbox/pgoutbox/outbox"
	"github.com/pgoutbox/pgoutbox/relay"
)

// modeRun is what one relay mode did with the same four messages.
type modeRun struct {
	spans    []string         // "name attempt status", sorted
	counters map[string]int64 // relay metrics
	statuses map[string]string
	producer string // the producer span's trace id
	traces   map[string]bool
	parents  map[string]bool
}

// runMode enqueues four messages under a producer span (with the trace
// context injected into their headers), and runs a relay of the given mode
// over them: "ok" succeeds, "panic" panics once then succeeds, "permanent"
// fails permanently, "flaky" fails once then succeeds.
func runMode(t *testing.T, mode relay.Mode) modeRun {
	t.Helper()
	prop := propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
	f := newFixture(t, outbox.WithPropagator(prop))
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))

	ctx, producer := tp.Tracer("producer").Start(f.ctx, "place order")
	ids := map[string]string{}
	for _, p := range []string{"ok", "panic", "permanent", "flaky"} {
		res, err := f.store.Enqueue(ctx, outbox.Draft{
			Lane: outbox.LaneCanonical, Target: outbox.TargetProtocolProjector, Payload: json.RawMessage(`"` + p + `"`),
		})
		if err != nil {
			t.Fatal(err)
		}
		ids[res.Message.ID] = p
	}
	producer.End()

	var mu sync.Mutex
	failed := map[string]bool{}
	cfg := relayConfig(func(_ context.Context, m outbox.Message) error {
		var p string
		_ = json.Unmarshal(m.Payload, &p)
		mu.Lock()
		first := !failed[p]
		failed[p] = true
		mu.Unlock()
		switch {
		case p == "panic" && first:
			panic("handler bug")
		case p == "permanent":
			return relay.Permanent(errors.New("malformed"))
		case p == "flaky" && first:
			return errors.New("try again")
		}
		return nil
	})
	cfg.Mode = mode
	cfg.Backoff = func(int) time.Duration { return 0 }
	cfg.TracerProvider, cfg.MeterProvider = tp, mp
	stop := runRelay(t, newRelay(t, f.store, cfg))
	eventually(t, 20*time.Second, "all four settled", func() bool {
		return f.count("status IN ('delivered', 'dead_letter')") == 4
	})
	stop()

	run := modeRun{counters: map[string]int64{}, statuses: map[string]string{}, traces: map[string]bool{}, parents: map[string]bool{},
		producer: producer.SpanContext().TraceID().String()}
	for id, p := range ids {
		run.statuses[p] = string(f.get(f.store, id).Status)
	}
	for _, s := range spans.Ended() {
		if s.Name() == "place order" {
			continue
		}
		attrs := attribute.NewSet(s.Attributes()...)
		attempt, _ := attrs.Value("pgoutbox.attempt")
		id, _ := attrs.Value("pgoutbox.message.id")
		run.spans = append(run.spans, fmt.Sprintf("%s %s attempt %d %s", s.Name(), ids[id.AsString()], attempt.AsInt64(), s.Status().Code))
		run.traces[s.SpanContext().TraceID().String()] = true
		run.parents[s.Parent().SpanID().String()] = s.Parent().SpanID() == producer.SpanContext().SpanID()
	}
	sort.Strings(run.spans)
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					run.counters[m.Name] += p.Value
				}
			case metricdata.Histogram[float64]:
				for _, p := range d.DataPoints {
					run.counters[m.Name] += int64(p.Count)
				}
			}
		}
	}
	return run
}

// Claim mode and lock mode deliver through the same code: the same spans
// (a child of the producer's span, in the producer's trace, for every
// attempt), the same metrics, the same panic recovery and the same
// Permanent handling, for the same four messages.
func TestBothModesDeliverAlike(t *testing.T) {
	var claim, lock modeRun
	t.Run("runs", func(t *testing.T) {
		t.Run("claim", func(t *testing.T) { claim = runMode(t, relay.ModeClaim) })
		t.Run("lock", func(t *testing.T) { lock = runMode(t, relay.ModeLock) })
	})
	for _, run := range []struct {
		name string
		r    modeRun
	}{{"claim", claim}, {"lock", lock}} {
		want := []string{
			"pgoutbox.deliver flaky attempt 1 Error", "pgoutbox.deliver flaky attempt 2 Unset",
			"pgoutbox.deliver ok attempt 1 Unset",
			"pgoutbox.deliver panic attempt 1 Error", "pgoutbox.deliver panic attempt 2 Unset",
			"pgoutbox.deliver permanent attempt 1 Error",
		}
		if strings.Join(run.r.spans, "\n") != strings.Join(want, "\n") {
			t.Errorf("%s mode spans:\n%s\nwant\n%s", run.name, strings.Join(run.r.spans, "\n"), strings.Join(want, "\n"))
		}
		if len(run.r.traces) != 1 || !run.r.traces[run.r.producer] {
			t.Errorf("%s mode: delivery spans in traces %v, want only the producer's %s", run.name, run.r.traces, run.r.producer)
		}
		for parent, isProducer := range run.r.parents {
			if !isProducer {
				t.Errorf("%s mode: a delivery span's parent is %s, not the producer's span", run.name, parent)
			}
		}
		if want := map[string]string{"ok": "delivered", "panic": "delivered", "permanent": "dead_letter", "flaky": "delivered"}; fmt.Sprint(run.r.statuses) != fmt.Sprint(want) {
			t.Errorf("%s mode statuses %v", run.name, run.r.statuses)
		}
	}
	for _, name := range []string{"pgoutbox.relay.acked", "pgoutbox.relay.nacked", "pgoutbox.relay.dead_lettered", "pgoutbox.relay.handler.duration"} {
		if claim.counters[name] != lock.counters[name] {
			t.Errorf("%s: claim mode %d, lock mode %d", name, claim.counters[name], lock.counters[name])
		}
	}
	if claim.counters["pgoutbox.relay.acked"] != 3 || claim.counters["pgoutbox.relay.nacked"] != 2 || claim.counters["pgoutbox.relay.dead_lettered"] != 1 {
		t.Errorf("counters %v", claim.counters)
	}
}
