package relay

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// metrics are the relay's OpenTelemetry instruments, all attributed with the
// relay's lane and target.
type metrics struct {
	claimed, acked, nacked, deadLettered, lost metric.Int64Counter
	duration                                   metric.Float64Histogram
	inflight                                   metric.Int64UpDownCounter
	batch                                      metric.Int64Histogram
	// The lane and target attributes as the option lists of Add and
	// Record, built once: a variadic call with a single option builds its
	// slice on the heap (the instruments are interfaces), and the relay
	// records three measurements per message.
	addOpts    []metric.AddOption
	recordOpts []metric.RecordOption
}

const meterName = "github.com/pgoutbox/pgoutbox/relay"

func newMetrics(mp metric.MeterProvider, lane, target string) (*metrics, error) {
	m := mp.Meter(meterName)
	var (
		x   metrics
		err error
	)
	counters := []struct {
		dst  *metric.Int64Counter
		name string
		desc string
	}{
		{&x.claimed, "pgoutbox.relay.claimed", "Messages claimed."},
		{&x.acked, "pgoutbox.relay.acked", "Messages acked after a successful delivery."},
		{&x.nacked, "pgoutbox.relay.nacked", "Failed deliveries given back for a retry."},
		{&x.deadLettered, "pgoutbox.relay.dead_lettered", "Messages dead-lettered: permanent errors and last attempts."},
		{&x.lost, "pgoutbox.relay.lost_claims", "Claims lost before the relay could ack or nack (lease expired, or ack found another holder)."},
	}
	for _, c := range counters {
		if *c.dst, err = m.Int64Counter(c.name, metric.WithDescription(c.desc), metric.WithUnit("{message}")); err != nil {
			return nil, err
		}
	}
	if x.duration, err = m.Float64Histogram("pgoutbox.relay.handler.duration",
		metric.WithDescription("Time a handler took to deliver a message."), metric.WithUnit("s")); err != nil {
		return nil, err
	}
	if x.inflight, err = m.Int64UpDownCounter("pgoutbox.relay.inflight",
		metric.WithDescription("Handlers running."), metric.WithUnit("{message}")); err != nil {
		return nil, err
	}
	if x.batch, err = m.Int64Histogram("pgoutbox.relay.claim.batch_size",
		metric.WithDescription("Messages returned by one claim."), metric.WithUnit("{message}")); err != nil {
		return nil, err
	}
	attrs := metric.WithAttributeSet(attribute.NewSet(
		attribute.String("pgoutbox.lane", lane), attribute.String("pgoutbox.target", target)))
	x.addOpts, x.recordOpts = []metric.AddOption{attrs}, []metric.RecordOption{attrs}
	return &x, nil
}

func (x *metrics) add(ctx context.Context, c metric.Int64Counter, n int) {
	if n > 0 {
		c.Add(ctx, int64(n), x.addOpts...)
	}
}
