package main

import (
	"strings"
	"testing"
	"time"

	"github.com/pgoutbox/pgoutbox/internal/benchkit"
)

func keyedReport(ran ...string) *report {
	r := newReport(ran...)
	r.opts.keyed = true
	r.opts.messages, r.opts.keys = 200_000, 10_000
	r.opts.relaysList = []int{1, 2}
	r.opts.hotMessages, r.opts.coldKeys, r.opts.coldPerKey, r.opts.hotRelays, r.opts.concurrency = 100_000, 1000, 20, 2, 256
	r.opts.claimKeys, r.opts.claimDepths, r.opts.claimBatches, r.opts.claims = 10_000, []int{1, 100}, []int{16, 64}, 500
	return r
}

// Issue 10's targets: keyed burn-down against unkeyed at every relay count,
// cold keys beside a hot key, claim latency against the depth of the keys,
// keyed Enqueue against unkeyed; each met or missed on its own bar.
func TestOrderingTargets(t *testing.T) {
	r := keyedReport("burn-down", "hot-key", "keyed-claim", "enqueue")
	for _, x := range []struct {
		sc, variant, system string
		rate                float64
		p50, p99            time.Duration
	}{
		{scBurnDown, "1 relay(s)", sysPgoutbox, 20_000, 0, 0},
		{scBurnDown, r.keyedRelayVariant(1), sysPgoutbox, 19_000, 0, 0},
		{scBurnDown, "2 relay(s)", sysPgoutbox, 20_000, 0, 0},
		{scBurnDown, r.keyedRelayVariant(2), sysPgoutbox, 12_000, 0, 0},
		{scBurnDown, "1 relay(s)", sysLock, 40_000, 0, 0},
		{scBurnDown, r.keyedRelayVariant(1), sysLock, 36_000, 0, 0},
		{scBurnDown, "2 relay(s)", sysLock, 40_000, 0, 0},
		{scBurnDown, r.keyedRelayVariant(2), sysLock, 33_000, 0, 0},
		{scHotKey, variantColdAlone, sysPgoutbox, 10_000, 0, 0},
		{scHotKey, variantColdHot, sysPgoutbox, 9_500, 0, 0},
		{scHotKey, variantColdAlone, sysLock, 10_000, 0, 0},
		{scHotKey, variantColdHot, sysLock, 8_000, 0, 0},
		{scKeyedClaim, r.keyedClaimVariant(16, 1), sysPgoutbox, 10_000, time.Millisecond, 2 * time.Millisecond},
		{scKeyedClaim, r.keyedClaimVariant(16, 100), sysPgoutbox, 10_000, 1200 * time.Microsecond, 2 * time.Millisecond},
		{scKeyedClaim, r.keyedClaimVariant(64, 1), sysPgoutbox, 10_000, 3 * time.Millisecond, 5 * time.Millisecond},
		{scKeyedClaim, r.keyedClaimVariant(64, 100), sysPgoutbox, 10_000, 6 * time.Millisecond, 9 * time.Millisecond},
		{scEnqueueOne, "1 clients", sysEnqueue, 1000, 0, 0},
		{scEnqueueOne, "1 clients", sysEnqueueKeyed, 950, 0, 0},
		{scEnqueueOne, "16 clients", sysEnqueue, 2000, 0, 0},
		{scEnqueueOne, "16 clients", sysEnqueueKeyed, 1600, 0, 0},
		{scEnqueueOne, "16 clients", sysEnqueueOneKey, 500, 0, 0},
	} {
		s := sample{rate: x.rate, p50: x.p50, p99: x.p99}
		if x.sc == scBurnDown {
			s.delivered, s.delWAL = 1000, wal(400_000, 4000)
			if isKeyed(x.variant) {
				s.delWAL = wal(900_000, 9000)
			}
		}
		r.add(x.sc, x.variant, x.system, s)
	}
	md := r.markdown()
	for name, want := range map[string]string{
		"keyed burn-down (10,000 keys x 20) >= 0.8x unkeyed, same relays and concurrency, claim mode":                                                                       "| 1 relay(s) 0.95x, 2 relay(s) 0.60x | **no** |",
		"keyed burn-down (10,000 keys x 20) >= 0.8x unkeyed, same relays and concurrency, lock mode":                                                                        "| 1 relay(s) 0.90x, 2 relay(s) 0.82x | yes |",
		"cold keys beside a hot key of 100,000 messages drain >= 0.9x their rate alone (pgoutbox)":                                                                          "| 0.95x (9,500 vs 10,000 cold msg/s) | yes |",
		"cold keys beside a hot key of 100,000 messages drain >= 0.9x their rate alone (pgoutbox lock mode)":                                                                "| 0.80x (8,000 vs 10,000 cold msg/s) | **no** |",
		"keyed claim of 16, p50 at 10,000 keys x 100 (1,000,000 pending) <= 1.3x at 10,000 keys x 1":                                                                        "| 1.20x (1.20 ms vs 1.00 ms; p99 1.00x: 2.00 ms vs 2.00 ms) | yes |",
		"keyed claim of 64, p50 at 10,000 keys x 100 (1,000,000 pending) <= 1.3x at 10,000 keys x 1":                                                                        "| 2.00x (6.00 ms vs 3.00 ms; p99 1.80x: 9.00 ms vs 5.00 ms) | **no** |",
		"keyed Enqueue (a key per client) <= 1.15x unkeyed (time per message), 1 and 16 clients":                                                                            "| 1 client(s) 1.05x, 16 client(s) 1.25x | **no** |",
		"keyed claim plans walk heads by index scans of pgoutbox_message_key_idx (no bitmap or sequential scan), on fresh statistics and on statistics from before any key": "| not measured (no plan recorded) | - |",
	} {
		if row := targetRow(t, md, name); !strings.HasSuffix(row, want) {
			t.Errorf("target %q:\n got %s\nwant suffix %s", name, row, want)
		}
	}
	// A miss carries its why: the evidence of both series.
	if !strings.Contains(md, "### keyed burn-down (10,000 keys x 20) >= 0.8x unkeyed, same relays and concurrency, claim mode") ||
		!strings.Contains(md, "burn-down / 2 relay(s), keyed: 10,000 keys x 20 / pgoutbox (12,000 msg/s)") {
		t.Errorf("the keyed burn-down's miss has no evidence:\n%s", md)
	}
	for _, line := range []string{
		"- 2 relay(s), keyed: 10,000 keys x 20, pgoutbox: 0.60x the unkeyed burn-down at 2 relay(s)",
		"- 16 clients: keyed Enqueue (a key per client) takes 1.25x the time of an unkeyed one per message",
		"- 16 clients, all on one key: 4.00x the time of an unkeyed Enqueue per message (no target",
		"- pgoutbox: cold keys drain at 0.95x their rate alone",
		"- batch 64 at 100 messages per key: p50 2.00x, p99 1.80x those at 1 per key",
	} {
		if !strings.Contains(md, line) {
			t.Errorf("report lacks %q:\n%s", line, md)
		}
	}
	// The WAL target is the unkeyed burn-down's, as before keys existed.
	if row := targetRow(t, md, "WAL per delivered message, claim mode (burn-down drain) <= 500 B"); !strings.HasSuffix(row, "| 400 B (worst: 1 relay(s)) | yes |") {
		t.Errorf("WAL target: %s", row)
	}
}

// Without the scenarios, the targets say which did not run; with keyed
// variants off, the keyed ones say so too.
func TestOrderingTargetsNotMeasured(t *testing.T) {
	r := keyedReport("burn-down")
	r.opts.keyed = false
	md := r.markdown()
	for name, want := range map[string]string{
		"keyed burn-down (10,000 keys x 20) >= 0.8x unkeyed, same relays and concurrency, claim mode": "not measured (keyed burn-down did not run) | - |",
		"cold keys beside a hot key of 100,000 messages drain >= 0.9x their rate alone (pgoutbox)":    "not measured (hot-key did not run) | - |",
		"keyed claim of 16, p50 at 10,000 keys x 100 (1,000,000 pending) <= 1.3x at 10,000 keys x 1":  "not measured (keyed-claim did not run) | - |",
		"keyed Enqueue (a key per client) <= 1.15x unkeyed (time per message), 1 and 16 clients":      "not measured (keyed enqueue did not run) | - |",
	} {
		if row := targetRow(t, md, name); !strings.HasSuffix(row, want) {
			t.Errorf("target %q:\n got %s\nwant suffix %s", name, row, want)
		}
	}
}

// A plan excerpt as auto_explain sends it: a generic plan walking heads by
// index, and one whose head lookup became a bitmap scan.
const indexWalkPlan = `duration: 1.512 ms  plan:
Sort  (cost=373.55..373.56 rows=3 width=393) (actual time=1.512..1.527 rows=16 loops=1)
  Buffers: shared hit=448 read=7
  CTE heads_after
    ->  Recursive Union  (cost=0.42..68.88 rows=101 width=35) (actual time=0.103..0.536 rows=16 loops=1)
          Buffers: shared hit=78 read=2
          ->  Limit  (cost=0.42..0.62 rows=1 width=35) (actual time=0.103..0.103 rows=1 loops=1)
                ->  Index Scan using pgoutbox_message_key_idx on pgoutbox_message m_2  (cost=0.42..65805.38 rows=333333 width=35) (actual time=0.102..0.102 rows=1 loops=1)
  CTE heads_before
    ->  Recursive Union  (cost=0.42..215.18 rows=101 width=35) (never executed)
  CTE keyed
    ->  LockRows  (cost=3.01..11.05 rows=1 width=54) (actual time=0.672..0.707 rows=16 loops=1)
          ->  Bitmap Heap Scan on pgoutbox_message m_6  (cost=0.42..8.45 rows=1 width=22) (actual rows=16 loops=1)`

func TestHeadWalkOfAPlan(t *testing.T) {
	walk := headWalk(indexWalkPlan)
	if !strings.Contains(walk, "Index Scan using pgoutbox_message_key_idx") || strings.Contains(walk, "Bitmap") || strings.Contains(walk, "LockRows") {
		t.Errorf("head walk:\n%s", walk)
	}
	if got, want := headBuffers(indexWalkPlan), "16 keys visited, 80 buffers (5.0 per key)"; got != want {
		t.Errorf("head buffers %q, want %q", got, want)
	}
	if got := planText("duration: 1.5 ms  plan:\nQuery Text: -- name: MessageClaim :many\nWITH RECURSIVE clock AS (\n  SELECT 1)\nSort  (cost=1..2 rows=1 width=1)\n  CTE clock"); got != "duration: 1.5 ms  plan:\nSort  (cost=1..2 rows=1 width=1)\n  CTE clock" {
		t.Errorf("planText dropped the wrong lines:\n%s", got)
	}

	r := keyedReport("keyed-claim")
	r.add(scKeyedClaim, r.keyedClaimStaleVariant(16, 1), sysPgoutbox, sample{rate: 100, p50: time.Second, p99: 2 * time.Second})
	r.add(scKeyedClaim, r.keyedClaimVariant(16, 1), sysPgoutbox, sample{rate: 10_000, p50: time.Millisecond, p99: 2 * time.Millisecond})
	generic := "batch 16, its generic plan (plan_cache_mode = force_generic_plan)"
	r.claimPlans = []claimPlan{
		{label: generic, short: "batch 16 generic plan", stats: statsFresh, table: "10,000 keys x 100", plan: indexWalkPlan},
		{label: generic, short: "batch 16 generic plan", stats: statsBeforeKeys, table: "10,000 keys x 1", plan: indexWalkPlan},
	}
	if g := r.planWalkGoal(); !g.met || g.figure != "statistics of the table as it is: index scans (5.0 buffers per key); statistics from before any key: index scans (5.0 buffers per key)" {
		t.Errorf("index walks: %+v", g)
	}
	r.claimPlans[1].plan = strings.Replace(indexWalkPlan, "->  Index Scan using pgoutbox_message_key_idx on pgoutbox_message m_2",
		"->  Bitmap Heap Scan on pgoutbox_message m_2", 1)
	g := r.planWalkGoal()
	if g.met || !strings.HasSuffix(g.figure, "statistics from before any key: batch 16 generic plan **bitmap scan** (5.0 buffers per key) (plans under keyed claim latency)") ||
		len(g.why) != 1 || g.why[0].variant != r.keyedClaimStaleVariant(16, 1) {
		t.Errorf("bitmap walk: %+v", g)
	}
	r.claimPlans[1].plan = strings.Replace(indexWalkPlan, "->  Index Scan using pgoutbox_message_key_idx on pgoutbox_message m_2",
		"->  Seq Scan on pgoutbox_message m_2", 1)
	if g := r.planWalkGoal(); g.met || !strings.Contains(g.figure, "**sequential scan**") {
		t.Errorf("sequential walk: %+v", g)
	}
	r.claimPlans[1] = claimPlan{label: generic, short: "batch 16", stats: statsBeforeKeys, err: "no plan: LOAD 'auto_explain' failed: permission denied"}
	if g := r.planWalkGoal(); g.measured || !strings.Contains(g.figure, "permission denied") {
		t.Errorf("no plan: %+v", g)
	}
	md := r.markdown()
	if !strings.Contains(md, "- batch 16 on statistics from before any key: p50 1000.00x, p99 1000.00x those on the same table analyzed") {
		t.Errorf("no stale-statistics ratio:\n%s", md)
	}
}

// Cold and hot drafts interleave in proportion, each key's messages in
// order; the hot key sorts among the cold keys.
func TestHotKeyDrafts(t *testing.T) {
	d := hotKeyDrafts(4, 3, 24)
	if len(d) != 36 {
		t.Fatalf("%d drafts, want 36", len(d))
	}
	hot := hotKeyName(4)
	seen := map[string]int{}
	firstHalfCold := 0
	for i, x := range d {
		seen[x.OrderingKey]++
		if x.OrderingKey != hot && i < 18 {
			firstHalfCold++
		}
	}
	if seen[hot] != 24 || len(seen) != 5 || firstHalfCold != 6 {
		t.Errorf("keys %v, %d cold in the first half (want 6 of 12)", seen, firstHalfCold)
	}
	if hot <= benchkit.KeyName(1) || hot >= benchkit.KeyName(3) {
		t.Errorf("hot key %s does not sort among the cold keys", hot)
	}
	// Producers own disjoint keys, and a batch's keys are distinct.
	owner := map[string]int{}
	for p := range producers {
		batch := map[string]bool{}
		for i := range produceBatch {
			k := producerKey(10_000, p, 7*produceBatch+i)
			if o, ok := owner[k]; ok && o != p {
				t.Fatalf("key %s of producers %d and %d", k, o, p)
			}
			owner[k] = p
			batch[k] = true
		}
		if len(batch) != produceBatch {
			t.Errorf("producer %d: %d distinct keys in a batch of %d", p, len(batch), produceBatch)
		}
	}
}
