package dashboard

import (
	"context"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/attribute"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"net/http"
)

// meterName is the instrumentation scope of the dashboard's own metrics.
const meterName = "github.com/pgoutbox/pgoutbox/dashboard"

// metrics exports the sampler's latest figures as gauges, next to whatever
// else reports through the provider (the relays a service gives it to).
type metrics struct {
	provider  *sdkmetric.MeterProvider
	registry  *prometheus.Registry
	handler   http.Handler
	sampleDur metric.Float64Histogram
	sampleErr metric.Int64Counter
}

func newMetrics(reg *prometheus.Registry, latest func() *sample) (*metrics, error) {
	if reg == nil {
		reg = prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	exp, err := otelprom.New(otelprom.WithRegisterer(reg))
	if err != nil {
		return nil, fmt.Errorf("dashboard: prometheus exporter: %w", err)
	}
	m := &metrics{
		provider: sdkmetric.NewMeterProvider(sdkmetric.WithReader(exp)),
		registry: reg,
		handler:  promhttp.HandlerFor(reg, promhttp.HandlerOpts{}),
	}
	meter := m.provider.Meter(meterName)
	gauge := func(name, unit, desc string) metric.Int64ObservableGauge {
		if err == nil {
			var g metric.Int64ObservableGauge
			g, err = meter.Int64ObservableGauge(name, metric.WithUnit(unit), metric.WithDescription(desc))
			return g
		}
		return nil
	}
	pending := gauge("pgoutbox.messages.pending", "{message}", "Pending messages, per scope, lane and target.")
	due := gauge("pgoutbox.messages.due", "{message}", "Pending messages already available.")
	claimed := gauge("pgoutbox.messages.claimed", "{message}", "Claimed messages (in flight).")
	expired := gauge("pgoutbox.messages.expired_leases", "{message}", "Claimed messages whose lease has run out.")
	dead := gauge("pgoutbox.messages.dead_letters", "{message}", "Dead letters.")
	if err != nil {
		return nil, fmt.Errorf("dashboard: metrics: %w", err)
	}
	age, err := meter.Float64ObservableGauge("pgoutbox.messages.oldest_due_age", metric.WithUnit("s"),
		metric.WithDescription("How long the oldest due message has waited; 0 when none is due."))
	if err != nil {
		return nil, fmt.Errorf("dashboard: metrics: %w", err)
	}
	rate, err := meter.Float64ObservableGauge("pgoutbox.messages.delivered_rate", metric.WithUnit("{message}/s"),
		metric.WithDescription("Messages delivered per second over the last sample interval."))
	if err != nil {
		return nil, fmt.Errorf("dashboard: metrics: %w", err)
	}
	_, err = meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		smp := latest()
		if smp == nil {
			return nil
		}
		for _, r := range smp.Rows {
			attrs := metric.WithAttributes(attribute.String("scope", r.Scope), attribute.String("lane", r.Lane), attribute.String("target", r.Target))
			o.ObserveInt64(pending, r.Pending, attrs)
			o.ObserveInt64(due, r.Due, attrs)
			o.ObserveInt64(claimed, r.Claimed, attrs)
			o.ObserveInt64(expired, r.ExpiredLeases, attrs)
			o.ObserveInt64(dead, r.DeadLetters, attrs)
			o.ObserveFloat64(age, r.OldestDueAge.Seconds(), attrs)
			if r.DeliveredPerSecond >= 0 {
				o.ObserveFloat64(rate, r.DeliveredPerSecond, attrs)
			}
		}
		return nil
	}, pending, due, claimed, expired, dead, age, rate)
	if err != nil {
		return nil, fmt.Errorf("dashboard: metrics: %w", err)
	}
	if m.sampleDur, err = meter.Float64Histogram("pgoutbox.dashboard.sample.duration", metric.WithUnit("s"),
		metric.WithDescription("How long one sample of the outbox took.")); err != nil {
		return nil, fmt.Errorf("dashboard: metrics: %w", err)
	}
	if m.sampleErr, err = meter.Int64Counter("pgoutbox.dashboard.sample.errors", metric.WithUnit("{sample}"),
		metric.WithDescription("Samples that failed.")); err != nil {
		return nil, fmt.Errorf("dashboard: metrics: %w", err)
	}
	return m, nil
}

func (m *metrics) sampled(ctx context.Context, took time.Duration, err error) {
	ctx = context.WithoutCancel(ctx)
	m.sampleDur.Record(ctx, took.Seconds())
	if err != nil {
		m.sampleErr.Add(ctx, 1)
	}
}
