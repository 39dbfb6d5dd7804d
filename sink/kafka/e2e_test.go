package kafkasink_test

import (
	"context"
	"testing"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/pgoutbox/pgoutbox/internal/sinktest"
	kafkasink "github.com/pgoutbox/pgoutbox/sink/kafka"
)

// End to end: producers enqueue drafts with a tenant header and ordering
// keys inside their spans, a relay of concurrency 8 produces them through
// the sink to a topic of four partitions, one confirm in five is lost on its
// way to the store (so the relay produces those again), and the topic holds
// every message at least once (Kafka does not deduplicate a new produce)
// with the producer's headers, its traceparent and baggage; each keyed
// record has its ordering key as the record key, each key lives in one
// partition, and there its messages are in enqueue order by offset.
func TestEndToEndHeadersTraceAndOrder(t *testing.T) {
	c := startCluster(t, kfake.SeedTopics(4, "e2e"))
	sink := newSink(t, c, "e2e")
	res := sinktest.RunEndToEnd(t, sinktest.EndToEnd{
		Handler:          sink.Handler(),
		LostConfirmEvery: 5,
		Read: func(ctx context.Context) ([]sinktest.Received, error) {
			recs, err := readTopic(ctx, c.Addr(), "e2e")
			if err != nil {
				return nil, err
			}
			out := make([]sinktest.Received, 0, len(recs))
			for _, r := range recs {
				h := make(map[string]string, len(r.Headers))
				for _, rh := range r.Headers {
					h[rh.Key] = string(rh.Value)
				}
				id := h[kafkasink.HeaderMessageID]
				out = append(out, sinktest.Received{ID: id, Headers: h, Payload: r.Value})
			}
			return out, nil
		},
	})
	recs, err := readTopic(t.Context(), c.Addr(), "e2e")
	if err != nil {
		t.Fatal(err)
	}
	partitions := map[string]map[int32]bool{} // by record key
	for _, r := range recs {
		if partitions[string(r.Key)] == nil {
			partitions[string(r.Key)] = map[int32]bool{}
		}
		partitions[string(r.Key)][r.Partition] = true
		id := header(r, kafkasink.HeaderMessageID)
		s, ok := res.Sent[id]
		if !ok {
			continue // reported by the run
		}
		want := s.OrderingKey
		if want == "" {
			want = id
		}
		if string(r.Key) != want {
			t.Errorf("message %s: record key %q, want %q", id, r.Key, want)
		}
	}
	used := map[int32]bool{}
	for i := range 8 {
		key := sinktest.KeyName(i)
		if len(partitions[key]) != 1 {
			t.Errorf("key %s in partitions %v, want one", key, partitions[key])
		}
		for p := range partitions[key] {
			used[p] = true
		}
	}
	if len(used) < 2 {
		t.Errorf("the 8 keys all hashed to partitions %v: the run did not spread keys over partitions", used)
	}
}
