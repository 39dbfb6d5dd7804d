package relay_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/pgoutbox/pgoutbox/memstore"
	"github.com/pgoutbox/pgoutbox/outbox"
	"github.com/pgoutbox/pgoutbox/relay"
)

// The relay's counters tell what happened to each message.
func TestRelayMetrics(t *testing.T) {
	store := memstore.New()
	reader := sdkmetric.NewManualReader()
	provider := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	failedOnce := false
	r, err := relay.New(store, relay.Config{
		Lane: "l", Target: "t", Wakeups: store, MeterProvider: provider,
		Backoff: func(int) time.Duration { return 0 },
		Handler: func(_ context.Context, m outbox.Message) error {
			switch string(m.Payload) {
			case `"flaky"`:
				if !failedOnce {
					failedOnce = true
					return errors.New("try again")
				}
			case `"bad"`:
				return relay.Permanent(errors.New("never"))
			}
			return nil
		},
		Concurrency: 1,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error)
	go func() { done <- r.Run(ctx) }()
	for _, p := range []string{`"ok"`, `"flaky"`, `"bad"`} {
		if _, err := store.Enqueue(t.Context(), outbox.Draft{Lane: "l", Target: "t", Payload: json.RawMessage(p)}); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		open, _ := store.List(t.Context(), outbox.ListFilter{Status: outbox.StatusPending})
		claimed, _ := store.List(t.Context(), outbox.ListFilter{Status: outbox.StatusClaimed})
		if len(open)+len(claimed) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("messages not settled")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(t.Context(), &rm); err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					got[m.Name] += p.Value
					if lane, _ := p.Attributes.Value("pgoutbox.lane"); lane.AsString() != "l" {
						t.Errorf("%s without the lane attribute", m.Name)
					}
				}
			case metricdata.Histogram[float64]:
				for _, p := range d.DataPoints {
					got[m.Name] += int64(p.Count)
				}
			}
		}
	}
	want := map[string]int64{
		"pgoutbox.relay.claimed": 4, "pgoutbox.relay.acked": 2, "pgoutbox.relay.nacked": 1,
		"pgoutbox.relay.dead_lettered": 1, "pgoutbox.relay.handler.duration": 4, "pgoutbox.relay.inflight": 0,
	}
	for name, n := range want {
		if got[name] != n {
			t.Errorf("%s = %d, want %d (all: %v)", name, got[name], n, got)
		}
	}
}
