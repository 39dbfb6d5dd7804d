package kafkasink_test

import (
	"cmp"
	"context"
	"fmt"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// cluster is a franz-go kfake cluster: a Kafka broker implemented in Go, in
// the test process (no real Kafka broker can be installed on the test
// machines). It persists to a temporary directory and can be closed and
// started again on the same port and data, which is how the fault test
// stops the broker.
type cluster struct {
	t     *testing.T
	port  int
	dir   string
	extra []kfake.Opt
	c     *kfake.Cluster
}

func startCluster(t *testing.T, opts ...kfake.Opt) *cluster {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	_ = l.Close()
	c := &cluster{t: t, port: port, dir: t.TempDir(), extra: opts}
	if err := c.Start(); err != nil {
		t.Fatalf("kfake: %v", err)
	}
	t.Cleanup(func() { _ = c.Stop() })
	return c
}

// Start starts the cluster (again) on its port, from its data directory.
func (c *cluster) Start() error {
	opts := append([]kfake.Opt{
		kfake.NumBrokers(1), kfake.Ports(c.port), kfake.DataDir(c.dir), kfake.SyncWrites(),
		kfake.ListenFn(func(network, _ string) (net.Listener, error) {
			return net.Listen(network, fmt.Sprintf("127.0.0.1:%d", c.port))
		}),
	}, c.extra...)
	var err error
	// The port may linger for a moment after Close.
	for deadline := time.Now().Add(10 * time.Second); ; {
		c.c, err = kfake.NewCluster(opts...)
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop closes the cluster: every connection drops and nothing answers.
func (c *cluster) Stop() error {
	if c.c != nil {
		c.c.Close()
		c.c = nil
	}
	return nil
}

func (c *cluster) Addr() string { return fmt.Sprintf("127.0.0.1:%d", c.port) }

// holds reads the topic from its start to its end offsets (taken first)
// and counts records by message id.
func holds(ctx context.Context, addr, topic string) (map[string]int, error) {
	recs, err := readTopic(ctx, addr, topic)
	if err != nil {
		return nil, err
	}
	out := map[string]int{}
	for _, r := range recs {
		for _, h := range r.Headers {
			if h.Key == "pgoutbox-message-id" {
				out[string(h.Value)]++
			}
		}
	}
	return out, nil
}

// readTopic reads the topic from its start to its end offsets (taken
// first), and returns the records by partition, each partition's in offset
// order.
func readTopic(ctx context.Context, addr, topic string) ([]*kgo.Record, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(100*time.Millisecond))
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, topic)
	if err != nil {
		return nil, err
	}
	if err := ends.Error(); err != nil {
		return nil, err
	}
	want := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			want[o.Partition] = o.Offset
		}
	})
	var out []*kgo.Record
	for len(want) > 0 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		fs.EachRecord(func(r *kgo.Record) {
			if end, ok := want[r.Partition]; ok {
				out = append(out, r)
				if r.Offset+1 >= end {
					delete(want, r.Partition)
				}
			}
		})
	}
	slices.SortStableFunc(out, func(a, b *kgo.Record) int {
		return cmp.Or(cmp.Compare(a.Partition, b.Partition), cmp.Compare(a.Offset, b.Offset))
	})
	return out, nil
}
