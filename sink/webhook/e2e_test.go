package webhook_test

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/pgoutbox/pgoutbox/internal/sinktest"
	"github.com/pgoutbox/pgoutbox/sink/webhook"
)

// End to end: producers enqueue drafts with a tenant header and ordering
// keys inside their spans, a relay of concurrency 8 delivers them through
// the sink, one success in five is lost on its way to the store (so the relay
// delivers those again), and the receiver got each one, verified, with the
// producer's headers, its traceparent and baggage, and each key's requests in
// enqueue order (the order they arrived; a repeat comes right after its
// first delivery). HTTP does not deduplicate: at least once.
func TestEndToEndHeadersTraceAndOrder(t *testing.T) {
	s := secret(t)
	rc := newReceiver(t, s)
	srv := httptest.NewServer(rc)
	defer srv.Close()
	sink, err := webhook.New(webhook.Config{URL: srv.URL, Secrets: []string{s}})
	if err != nil {
		t.Fatal(err)
	}
	sinktest.RunEndToEnd(t, sinktest.EndToEnd{
		Handler:          sink.Handler(),
		LostConfirmEvery: 5,
		Read: func(context.Context) ([]sinktest.Received, error) {
			rc.mu.Lock()
			defer rc.mu.Unlock()
			if len(rc.rejected) > 0 {
				t.Errorf("the receiver rejected %d requests: %v", len(rc.rejected), rc.rejected)
			}
			// rc.headers holds every request in the order it arrived.
			out := make([]sinktest.Received, 0, len(rc.headers))
			for _, h := range rc.headers {
				got := make(map[string]string, len(h))
				for k := range h {
					got[strings.ToLower(k)] = h.Get(k)
				}
				id := h.Get(webhook.HeaderID)
				out = append(out, sinktest.Received{ID: id, Headers: got, Payload: rc.bodies[id]})
			}
			return out, nil
		},
	})
}
