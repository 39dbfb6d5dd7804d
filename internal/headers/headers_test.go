package headers

import (
	"context"
	"maps"
	"testing"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

func TestEncodeDecode(t *testing.T) {
	if Encode(nil) != nil || Encode(map[string]string{}) != nil {
		t.Error("no headers must encode as NULL")
	}
	h := map[string]string{"b": "2", "a": "1 \u00e9"}
	if got := string(Encode(h)); got != `{"a":"1 é","b":"2"}` {
		t.Errorf("Encode = %s", got)
	}
	back, err := Decode(Encode(h))
	if err != nil || len(back) != 2 || back["a"] != h["a"] {
		t.Errorf("Decode = %v %v", back, err)
	}
	if back, err := Decode([]byte(`null`)); err != nil || back != nil {
		t.Errorf("Decode(null) = %v %v", back, err)
	}
	if Stored(nil) != nil || Stored(map[string]string{}) != nil {
		t.Error("no headers must be stored as nil, as Decode reads them")
	}
	if s := Stored(h); !maps.Equal(s, back) {
		t.Errorf("Stored = %v, Decode(Encode) = %v", s, back)
	} else if s["b"] = "changed"; h["b"] != "2" {
		t.Error("Stored shares the map it was given")
	}
}

func spanContext(t *testing.T, traceByte byte) context.Context {
	t.Helper()
	sc := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{traceByte, 1}, SpanID: trace.SpanID{1}, TraceFlags: trace.FlagsSampled,
	})
	return trace.ContextWithSpanContext(context.Background(), sc)
}

func TestInjectAndSameDraft(t *testing.T) {
	p := propagation.TraceContext{}
	own := map[string]string{"content-type": "application/json"}
	a := Inject(spanContext(t, 1), p, own)
	if a["traceparent"] == "" || a["content-type"] != "application/json" || len(own) != 1 {
		t.Fatalf("Inject = %v (draft headers %v)", a, own)
	}
	if got := Inject(context.Background(), p, own); len(got) != 1 {
		t.Errorf("no span, yet injected: %v", got)
	}
	// The same draft retried under another trace is the same draft.
	if !SameDraft(own, a, p) {
		t.Error("a retry under another trace counts as another draft")
	}
	if SameDraft(map[string]string{"content-type": "text/plain"}, a, p) {
		t.Error("another content type counts as the same draft")
	}
	if SameDraft(map[string]string{}, a, p) {
		t.Error("a draft without the stored content type counts as the same")
	}
	// A traceparent the producer set itself is compared.
	mine := map[string]string{"traceparent": "00-01-02-01"}
	if SameDraft(map[string]string{"traceparent": "00-03-04-01"}, Inject(context.Background(), p, mine), p) {
		t.Error("a producer's own traceparent is ignored")
	}
}
