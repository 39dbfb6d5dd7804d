package relay

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/pgoutbox/pgoutbox/outbox"
)

// executor runs one message through the handler. Both modes deliver through
// it, so a delivery has the same span, metrics, panic recovery and outcome
// rules whichever way the message was taken.
type executor struct {
	handler    Handler
	backoff    Backoff
	tracer     trace.Tracer
	propagator propagation.TextMapPropagator
	metrics    *metrics
	logger     *slog.Logger
	// kind is trace.WithSpanKind(trace.SpanKindConsumer), boxed once:
	// WithSpanKind boxes its value into the option interface on every call.
	kind trace.SpanStartOption
}

func newExecutor(handler Handler, backoff Backoff, tracer trace.Tracer, propagator propagation.TextMapPropagator,
	m *metrics, logger *slog.Logger,
) *executor {
	return &executor{handler: handler, backoff: backoff, tracer: tracer, propagator: propagator, metrics: m,
		logger: logger, kind: trace.WithSpanKind(trace.SpanKindConsumer)}
}

// spanStart holds a delivery span's attributes and start options in one
// allocation; built in place, they took three (the attributes, the option
// list, the kind). The tracer may keep the attributes: they stay valid, as
// nothing writes to them after Start.
type spanStart struct {
	attrs [4]attribute.KeyValue
	opts  [2]trace.SpanStartOption
}

// result is what a delivery came to.
type result struct {
	err        error         // nil: delivered
	permanent  bool          // dead-letter now
	retryAfter time.Duration // when not permanent: the delay before the next attempt
}

// run delivers m. ctx is the handler's context; the span and metrics are
// recorded on it.
//
// The delivery span is a child of the producer's span when the message's
// headers carry its trace context: every attempt of one message, retries
// included, then shows in the producer's trace, as one story from the
// enqueue to the last delivery. (OpenTelemetry's messaging conventions allow
// a link instead, which suits batch processing; a relay delivers each
// message on its own, and a link would leave each attempt in a trace of its
// own.)
func (x *executor) run(ctx context.Context, m outbox.Message) result {
	if len(m.Headers) > 0 {
		ctx = x.propagator.Extract(ctx, propagation.MapCarrier(m.Headers))
	}
	st := &spanStart{attrs: [4]attribute.KeyValue{
		attribute.String("pgoutbox.message.id", m.ID),
		attribute.String("pgoutbox.lane", m.Lane),
		attribute.String("pgoutbox.target", m.Target),
		attribute.Int("pgoutbox.attempt", m.AttemptCount),
	}}
	st.opts = [2]trace.SpanStartOption{x.kind, trace.WithAttributes(st.attrs[:]...)}
	ctx, span := x.tracer.Start(ctx, "pgoutbox.deliver", st.opts[:]...)
	defer span.End()
	x.metrics.inflight.Add(ctx, 1, x.metrics.addOpts...)
	started := time.Now()
	err := x.call(ctx, m)
	x.metrics.duration.Record(ctx, time.Since(started).Seconds(), x.metrics.recordOpts...)
	x.metrics.inflight.Add(ctx, -1, x.metrics.addOpts...)
	if err == nil {
		return result{}
	}
	span.RecordError(err)
	span.SetStatus(codes.Error, "handler failed")
	if IsPermanent(err) {
		return result{err: err, permanent: true}
	}
	delay := max(x.backoff(m.AttemptCount), 0)
	if after, ok := RetryDelay(err); ok {
		delay = max(delay, after)
	}
	return result{err: err, retryAfter: min(delay, outbox.MaxRetryDelay)}
}

// call runs the handler, turning a panic into an error.
func (x *executor) call(ctx context.Context, m outbox.Message) (err error) {
	defer func() {
		if p := recover(); p != nil {
			x.logger.ErrorContext(ctx, "relay: handler panicked", "id", m.ID, "lane", m.Lane,
				"target", m.Target, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			err = fmt.Errorf("handler panicked: %v", p)
		}
	}()
	return x.handler(ctx, m)
}
