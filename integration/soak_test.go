package integration

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// soakEnv sets how long TestSoak runs (make soak: 10m). Without it the test
// does not run: it is a load test, not part of make test.
const soakEnv = "OUTBOX_SOAK"

// TestSoak runs producers at a steady rate and relays for OUTBOX_SOAK, with
// faults from the fault tests at random intervals, then prints messages
// enqueued, delivered, duplicated and lost (which fails the test unless 0),
// the p99 commit-to-delivery latency and the process's RSS over time.
func TestSoak(t *testing.T) {
	d, err := time.ParseDuration(os.Getenv(soakEnv))
	if err != nil || d <= 0 {
		t.Skipf("set %s (for example %s=10m, as make soak does) to run the soak test", soakEnv, soakEnv)
	}
	lease := 3 * time.Second
	e := newFaultEnv(t, "", nil, lease)
	e.every = 5 * time.Millisecond // two producers: about 400 messages a second
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 3))
	faults := []struct {
		name string
		do   func()
	}{
		{"kill connections", func() {
			_, _ = e.direct.Exec(e.ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
				WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'`)
		}},
		{"latency", func() { e.proxy.SetLatency(30 * time.Millisecond); time.Sleep(3 * time.Second); e.proxy.SetLatency(0) }},
		{"cut", func() { e.proxy.Cut(); time.Sleep(2 * lease); e.proxy.Restore() }},
		{"half-open", func() { e.proxy.Blackhole(); time.Sleep(2 * lease); e.proxy.Restore() }},
	}
	var rss []string
	start := time.Now()
	r := e.run(faultConfig{producers: 2, relays: 2, lease: lease}, d, func() {
		deadline := time.Now().Add(d - 5*time.Second)
		next := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			time.Sleep(500 * time.Millisecond)
			if time.Since(start) >= time.Duration(len(rss))*30*time.Second {
				rss = append(rss, fmt.Sprintf("%s=%dMiB", time.Since(start).Round(time.Second), rssNow()>>20))
			}
			if time.Now().After(next) {
				f := faults[rng.IntN(len(faults))]
				t.Logf("soak: %s at %s", f.name, time.Since(start).Round(time.Second))
				f.do()
				next = time.Now().Add(time.Duration(10+rng.IntN(20)) * time.Second)
			}
		}
	})
	t.Logf("SOAK | %s | enqueued %d | delivered %d | duplicated %d | lost %d | p99 commit-to-delivery %s | RSS %s",
		d, r.committed, r.delivered, r.duplicated, r.lost, e.ledger.p99().Round(time.Millisecond), strings.Join(rss, " "))
	if r.lost != 0 {
		t.Fatalf("%d messages lost", r.lost)
	}
}

// rssNow reads the process's resident set size.
func rssNow() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			kb, _ := strconv.ParseInt(strings.Fields(line)[1], 10, 64)
			return kb * 1024
		}
	}
	return 0
}
