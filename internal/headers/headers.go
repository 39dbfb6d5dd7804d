// Package headers owns how message headers are stored and compared, and how
// a trace context gets into them, for every store of this module: a JSON
// object of strings in a jsonb column (NULL when there are none), compared
// by the names the producer set.
package headers

import (
	"context"
	"encoding/json"
	"maps"

	"go.opentelemetry.io/otel/propagation"
)

// Encode returns h as the JSON object the store keeps, or nil (SQL NULL)
// when h is empty. Keys come out sorted, so the same headers always encode
// alike.
func Encode(h map[string]string) json.RawMessage {
	if len(h) == 0 {
		return nil
	}
	b, err := json.Marshal(h)
	if err != nil {
		// Unreachable: a map of strings always encodes (invalid UTF-8 was
		// refused by validation).
		panic("headers: encode: " + err.Error())
	}
	return b
}

// Decode reads what Encode stored; nil or JSON null gives nil.
func Decode(b []byte) (map[string]string, error) {
	if len(b) == 0 || string(b) == "null" {
		return nil, nil
	}
	var h map[string]string
	if err := json.Unmarshal(b, &h); err != nil {
		return nil, err
	}
	if len(h) == 0 {
		return nil, nil
	}
	return h, nil
}

// Stored returns the headers a message holds once h is stored: what Decode
// returns for Encode(h) (nil when h is empty), as a copy that does not
// share h's map.
func Stored(h map[string]string) map[string]string {
	if len(h) == 0 {
		return nil
	}
	return maps.Clone(h)
}

// Inject returns h with the trace context of ctx added by p (for W3C
// propagators, traceparent, tracestate and baggage). Headers the producer
// set itself win over injected ones. h is not modified; with a nil
// propagator, or nothing to inject, h comes back as is.
func Inject(ctx context.Context, p propagation.TextMapPropagator, h map[string]string) map[string]string {
	if p == nil {
		return h
	}
	carrier := propagation.MapCarrier{}
	p.Inject(ctx, carrier)
	if len(carrier) == 0 {
		return h
	}
	out := make(map[string]string, len(h)+len(carrier))
	maps.Copy(out, carrier)
	maps.Copy(out, h)
	return out
}

// SameDraft reports whether the headers a draft carries (before injection)
// are those of the stored message, leaving out names the propagator would
// inject that the draft did not set itself: a producer retrying a request
// under another trace sends the same draft, though its trace context
// differs.
func SameDraft(draft, stored map[string]string, p propagation.TextMapPropagator) bool {
	injected := map[string]bool{}
	if p != nil {
		for _, f := range p.Fields() {
			if _, own := draft[f]; !own {
				injected[f] = true
			}
		}
	}
	n := 0
	for k, v := range stored {
		if injected[k] {
			continue
		}
		if dv, ok := draft[k]; !ok || dv != v {
			return false
		}
		n++
	}
	return n == len(draft)
}
