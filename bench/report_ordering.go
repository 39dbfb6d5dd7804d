package main

import (
	"fmt"
	"slices"
	"strings"
)

// The report's part on ordered delivery: variant names, issue 10's
// targets, ratio lines, and the claim plans.

func (r *report) perKey() int {
	if r.opts.keys == 0 {
		return 0
	}
	return r.opts.messages / r.opts.keys
}

func (r *report) keyedRelayVariant(n int) string {
	return fmt.Sprintf("%d relay(s), keyed: %s keys x %d", n, num(float64(r.opts.keys)), r.perKey())
}

func (r *report) keyedContinuousVariant() string {
	return fmt.Sprintf("%s, keyed: %s keys", variantContinuous, num(float64(r.opts.keys)))
}

func (r *report) keyedClaimTable(depth int) string {
	return fmt.Sprintf("%s keys x %d (%s pending)", num(float64(r.opts.claimKeys)), depth, num(float64(r.opts.claimKeys*depth)))
}

func (r *report) keyedClaimVariant(batch, depth int) string {
	return fmt.Sprintf("batch %d, %s", batch, r.keyedClaimTable(depth))
}

func (r *report) keyedClaimStaleVariant(batch, depth int) string {
	return r.keyedClaimVariant(batch, depth) + ", " + statsBeforeKeys
}

// isKeyed reports whether a variant is a keyed one of a scenario that also
// has unkeyed variants.
func isKeyed(variant string) bool { return strings.Contains(variant, "keyed") }

// orderingIntro describes a scenario of ordered delivery above its table.
func (r *report) orderingIntro(sc string, w func(string, ...any)) {
	switch sc {
	case scHotKey:
		w("%s cold keys of %d messages each, drained alone, and drained again with a hot key of %s messages enqueued among them\n",
			num(float64(r.opts.coldKeys)), r.opts.coldPerKey, num(float64(r.opts.hotMessages)))
		w("(interleaved in proportion, in batches of 1,000), by %d relay(s) of concurrency %d. msg/s counts cold messages, from the relays'\n", r.opts.hotRelays, r.opts.concurrency)
		w("start until the last cold message was handled; the hot key, one message at a time, is still draining then. `WAL B/del` divides\n")
		w("the drain's WAL by every message delivered in it, hot ones included.\n\n")
	case scKeyedClaim:
		w("One claim (`ClaimAndAck`, no acks) on a table of pending keyed messages only: %s keys, one message each, then the same keys\n", num(float64(r.opts.claimKeys)))
		w("with more behind their heads (the depths below). Each claim runs in a transaction that is then rolled back, so every claim sees\n")
		w("the same table; the store's round-robin key cursor still moves on, so successive claims walk the whole key space. One connection\n")
		w("per table and batch size, %d untimed claims first (a prepared statement gets its generic plan after five), then %d timed ones:\n", claimWarmUp, r.opts.claims)
		w("p50 and p99 are the claim statement's round trip; msg/s is messages claimed per second of claiming. Claims of fewer than 64 run\n")
		w("as prepared statements, larger ones are planned for each execution (see the README). The table's own fill (SQL, not the library)\n")
		w("is not measured, hence no WAL columns. Every table is analyzed after its fill, except in the rows \"%s\": there\n", statsBeforeKeys)
		w("the shallowest table runs on the statistics of a live unkeyed outbox (10,000 messages, six in ten delivered, the rest pending:\n")
		w("analyzed, then truncated, which keeps statistics), with autovacuum off, as a service that turns ordering keys on does until its\n")
		w("table's next ANALYZE; %d claims are timed there.\n\n", staleClaims(r.opts.claims))
	}
}

// orderingTargets are issue 10's performance targets.
func (r *report) orderingTargets() []goal {
	ran := func(sc string) bool { return slices.Contains(r.ran, sc) }
	var out []goal
	// Keyed burn-down against unkeyed, at every relay count, per mode.
	for _, sys := range []string{sysPgoutbox, sysLock} {
		mode := "claim mode"
		if sys == sysLock {
			mode = "lock mode"
		}
		name := fmt.Sprintf("keyed burn-down (%s keys x %d) >= 0.8x unkeyed, same relays and concurrency, %s", num(float64(r.opts.keys)), r.perKey(), mode)
		if !ran("burn-down") || !r.opts.keyed {
			out = append(out, notMeasured(name, "keyed burn-down"))
			continue
		}
		var parts []string
		worst, met := 10.0, true
		var why []*series
		for _, n := range r.opts.relaysList {
			x, ok := r.ratio(scBurnDown, r.keyedRelayVariant(n), sys, r.relayVariant(n), sys)
			if !ok {
				continue
			}
			parts = append(parts, fmt.Sprintf("%d relay(s) %.2fx", n, x))
			if x < worst {
				worst = x
				why = []*series{r.find(scBurnDown, r.keyedRelayVariant(n), sys), r.find(scBurnDown, r.relayVariant(n), sys)}
			}
			met = met && x >= 0.8
		}
		if len(parts) == 0 {
			out = append(out, goal{name: name, figure: "not measured (-systems left it out)"})
			continue
		}
		out = append(out, goal{name, strings.Join(parts, ", "), met, true, why})
	}
	// Cold keys beside a hot key.
	for _, sys := range []string{sysPgoutbox, sysLock} {
		name := fmt.Sprintf("cold keys beside a hot key of %s messages drain >= 0.9x their rate alone (%s)", num(float64(r.opts.hotMessages)), sys)
		if !ran("hot-key") {
			out = append(out, notMeasured(name, "hot-key"))
			continue
		}
		x, ok := r.ratio(scHotKey, variantColdHot, sys, variantColdAlone, sys)
		if !ok {
			out = append(out, goal{name: name, figure: "not measured (-systems left it out)"})
			continue
		}
		hot, alone := r.find(scHotKey, variantColdHot, sys), r.find(scHotKey, variantColdAlone, sys)
		out = append(out, goal{name, fmt.Sprintf("%.2fx (%s vs %s cold msg/s)", x, num(hot.medianRate()), num(alone.medianRate())), x >= 0.9, true, []*series{hot, alone}})
	}
	// Claim latency at the deepest table against the shallowest.
	for _, batch := range r.opts.claimBatches {
		if len(r.opts.claimDepths) < 2 {
			break
		}
		shallow, deep := r.opts.claimDepths[0], slices.Max(r.opts.claimDepths)
		name := fmt.Sprintf("keyed claim of %d, p50 at %s keys x %d (%s pending) <= 1.3x at %s keys x %d", batch,
			num(float64(r.opts.claimKeys)), deep, num(float64(r.opts.claimKeys*deep)), num(float64(r.opts.claimKeys)), shallow)
		if !ran("keyed-claim") {
			out = append(out, notMeasured(name, "keyed-claim"))
			continue
		}
		d, s := r.find(scKeyedClaim, r.keyedClaimVariant(batch, deep), sysPgoutbox), r.find(scKeyedClaim, r.keyedClaimVariant(batch, shallow), sysPgoutbox)
		if d == nil || s == nil || s.p50() == 0 || s.p99() == 0 {
			out = append(out, goal{name: name, figure: "not measured"})
			continue
		}
		x := float64(d.p50()) / float64(s.p50())
		x99 := float64(d.p99()) / float64(s.p99())
		out = append(out, goal{name, fmt.Sprintf("%.2fx (%s vs %s; p99 %.2fx: %s vs %s)", x, dur(d.p50()), dur(s.p50()), x99, dur(d.p99()), dur(s.p99())),
			x <= 1.3, true, []*series{d, s}})
	}
	out = append(out, r.planWalkGoal())
	// Keyed Enqueue against unkeyed, at 1 and 16 clients.
	{
		name := "keyed Enqueue (a key per client) <= 1.15x unkeyed (time per message), 1 and 16 clients"
		if !ran("enqueue") || !r.opts.keyed {
			out = append(out, notMeasured(name, "keyed enqueue"))
		} else {
			var parts []string
			met, measured := true, 0
			var why []*series
			for _, c := range []int{1, 16} {
				v := fmt.Sprintf("%d clients", c)
				x, ok := r.ratio(scEnqueueOne, v, sysEnqueue, v, sysEnqueueKeyed)
				if !ok {
					parts = append(parts, fmt.Sprintf("%d clients not measured (-clients has no %d)", c, c))
					continue
				}
				measured++
				parts = append(parts, fmt.Sprintf("%d client(s) %.2fx", c, x))
				if x > 1.15 {
					met = false
					why = append(why, r.find(scEnqueueOne, v, sysEnqueueKeyed), r.find(scEnqueueOne, v, sysEnqueue))
				}
			}
			out = append(out, goal{name, strings.Join(parts, ", "), met && measured == 2, measured > 0, why})
		}
	}
	return out
}

// planWalkGoal: every recorded plan of a keyed claim (the prepared claim
// as the store runs it and its generic plan, and the claim planned per
// execution) finds each head with one index probe (ORDER BY key, id LIMIT
// 1 on the key index), on fresh statistics and on statistics from before
// any key. A bitmap scan reads every index entry of the keys after the last
// one, a sequential scan the whole table, and either does it for every key
// visited: the depth of the keys, the trap issue 10 names.
func (r *report) planWalkGoal() goal {
	name := "keyed claim plans walk heads by index scans of pgoutbox_message_key_idx (no bitmap or sequential scan), on fresh statistics and on statistics from before any key"
	if !slices.Contains(r.ran, "keyed-claim") {
		return notMeasured(name, "keyed-claim")
	}
	if len(r.claimPlans) == 0 {
		return goal{name: name, figure: "not measured (no plan recorded)"}
	}
	var missing []string
	var why []*series
	bad := map[string][]string{}
	good := map[string][]string{}
	for _, p := range r.claimPlans {
		if p.plan == "" {
			missing = append(missing, p.stats+", "+p.short+": "+p.err)
			continue
		}
		walk := headWalk(p.plan)
		per := perKeyBuffers(p.plan)
		switch {
		case strings.Contains(walk, "Bitmap"):
			bad[p.stats] = append(bad[p.stats], fmt.Sprintf("%s **bitmap scan** (%s buffers per key)", p.short, per))
		case strings.Contains(walk, "Seq Scan"):
			bad[p.stats] = append(bad[p.stats], fmt.Sprintf("%s **sequential scan** (%s buffers per key)", p.short, per))
		case !strings.Contains(walk, "Index Scan using pgoutbox_message_key_idx") && !strings.Contains(walk, "Index Only Scan using pgoutbox_message_key_idx"):
			bad[p.stats] = append(bad[p.stats], p.short+" **no index scan of pgoutbox_message_key_idx**")
		default:
			good[p.stats] = append(good[p.stats], per)
			continue
		}
		if p.stats == statsBeforeKeys {
			for _, batch := range r.opts.claimBatches {
				if strings.HasPrefix(p.short, fmt.Sprintf("batch %d ", batch)) {
					if s := r.find(scKeyedClaim, r.keyedClaimStaleVariant(batch, r.opts.claimDepths[0]), sysPgoutbox); s != nil && !slices.Contains(why, s) {
						why = append(why, s)
					}
				}
			}
		}
	}
	if len(missing) > 0 {
		return goal{name: name, figure: "not measured (" + strings.Join(missing, "; ") + ")"}
	}
	var parts []string
	for _, st := range []string{statsFresh, statsBeforeKeys} {
		switch {
		case len(bad[st]) > 0:
			parts = append(parts, st+": "+strings.Join(bad[st], ", "))
		case len(good[st]) > 0:
			parts = append(parts, fmt.Sprintf("%s: index scans (%s buffers per key)", st, strings.Join(good[st], ", ")))
		default:
			return goal{name: name, figure: "not measured (no plan on " + st + ")"}
		}
	}
	met := len(bad) == 0
	fig := strings.Join(parts, "; ")
	if !met {
		fig += " (plans under keyed claim latency)"
	}
	return goal{name, fig, met, true, why}
}

// perKeyBuffers is the buffers a plan's head walk read per key visited.
func perKeyBuffers(plan string) string {
	heads, buffers := headStats(plan)
	if heads == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f", float64(buffers)/float64(heads))
}

// headWalk is the part of a claim plan that walks the keys: the CTEs
// heads_after and heads_before.
func headWalk(plan string) string {
	var out []string
	in, depth := false, 0
	for _, l := range strings.Split(plan, "\n") {
		trimmed := strings.TrimLeft(l, " ")
		indent := len(l) - len(trimmed)
		if strings.HasPrefix(trimmed, "CTE ") {
			in = strings.HasPrefix(trimmed, "CTE heads_")
			depth = indent
		} else if in && indent <= depth && trimmed != "" {
			in = false
		}
		if in {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// headBuffers sums up the head walk of a plan: the heads it found and the
// buffers its recursive unions read, per head.
func headBuffers(plan string) string {
	heads, buffers := headStats(plan)
	if heads == 0 {
		return "no head visited"
	}
	return fmt.Sprintf("%d keys visited, %d buffers (%.1f per key)", heads, buffers, float64(buffers)/float64(heads))
}

// headStats are the heads a plan's walk found (the rows of its recursive
// unions) and the buffers they read.
func headStats(plan string) (heads, buffers int64) {
	lines := strings.Split(headWalk(plan), "\n")
	for i, l := range lines {
		if !strings.Contains(l, "Recursive Union") {
			continue
		}
		// "(actual time=a..b rows=N loops=1)": the first rows= after "actual".
		var rows int64
		if k := strings.Index(l, "actual"); k >= 0 {
			if m := strings.Index(l[k:], "rows="); m >= 0 {
				_, _ = fmt.Sscanf(l[k+m:], "rows=%d", &rows)
			}
		}
		heads += rows
		if i+1 < len(lines) && strings.Contains(lines[i+1], "Buffers:") {
			buffers += sumBuffers(lines[i+1])
		}
	}
	return heads, buffers
}

// sumBuffers adds up the shared hit and read counts of a "Buffers:" line.
func sumBuffers(l string) int64 {
	var total int64
	for _, f := range strings.Fields(l) {
		for _, p := range []string{"hit=", "read="} {
			if strings.HasPrefix(f, p) {
				var n int64
				_, _ = fmt.Sscanf(strings.TrimPrefix(f, p), "%d", &n)
				total += n
			}
		}
	}
	return total
}

// orderingRatios are the ratio lines of ordered delivery under a scenario's
// table; ok is false for series they do not cover.
func (r *report) orderingRatio(sc string, s *series) (string, bool) {
	switch {
	case sc == scEnqueueOne && s.system == sysEnqueueKeyed:
		if x, ok := r.ratio(sc, s.variant, sysEnqueue, s.variant, s.system); ok {
			return fmt.Sprintf("%s: keyed Enqueue (a key per client) takes %.2fx the time of an unkeyed one per message", s.variant, x), true
		}
		return "", true
	case sc == scEnqueueOne && s.system == sysEnqueueOneKey:
		if x, ok := r.ratio(sc, s.variant, sysEnqueue, s.variant, s.system); ok {
			return fmt.Sprintf("%s, all on one key: %.2fx the time of an unkeyed Enqueue per message (no target: producers of one key take turns by design, each waiting for the previous one's commit)", s.variant, x), true
		}
		return "", true
	case sc == scBurnDown && isKeyed(s.variant):
		n := 0
		_, _ = fmt.Sscanf(s.variant, "%d relay(s)", &n)
		if x, ok := r.ratio(sc, s.variant, s.system, r.relayVariant(n), s.system); ok {
			return fmt.Sprintf("%s, %s: %.2fx the unkeyed burn-down at %d relay(s)", s.variant, s.system, x, n), true
		}
		return "", true
	case sc == scContinuous && isKeyed(s.variant):
		if x, ok := r.ratio(sc, s.variant, s.system, variantContinuous, s.system); ok {
			base := r.find(sc, variantContinuous, s.system)
			return fmt.Sprintf("%s keyed drains %.2fx its unkeyed rate; commit-to-handler p50 %s (unkeyed %s), p99 %s (unkeyed %s)",
				s.system, x, dur(s.p50()), dur(base.p50()), dur(s.p99()), dur(base.p99())), true
		}
		return "", true
	case sc == scHotKey && s.variant == variantColdHot:
		line := s.system + ":"
		if x, ok := r.ratio(sc, s.variant, s.system, variantColdAlone, s.system); ok {
			line += fmt.Sprintf(" cold keys drain at %.2fx their rate alone;", x)
		}
		m := s.medianSample()
		line += fmt.Sprintf(" the hot key delivered %s messages meanwhile (median run)", num(float64(m.hotDelivered)))
		if m.evidence.Elapsed > 0 {
			line += fmt.Sprintf(", %s/s", num(float64(m.hotDelivered)/m.evidence.Elapsed.Seconds()))
		}
		return line, true
	case sc == scKeyedClaim:
		return r.claimRatio(s), true
	}
	return "", false
}

func (r *report) claimRatio(s *series) string {
	if len(r.opts.claimDepths) < 2 {
		return ""
	}
	shallow := r.opts.claimDepths[0]
	for _, batch := range r.opts.claimBatches {
		if s.variant == r.keyedClaimStaleVariant(batch, shallow) {
			fresh := r.find(scKeyedClaim, r.keyedClaimVariant(batch, shallow), s.system)
			if fresh == nil || fresh.p50() == 0 || fresh.p99() == 0 {
				return ""
			}
			return fmt.Sprintf("batch %d on %s: p50 %.2fx, p99 %.2fx those on the same table analyzed",
				batch, statsBeforeKeys, float64(s.p50())/float64(fresh.p50()), float64(s.p99())/float64(fresh.p99()))
		}
		for _, depth := range r.opts.claimDepths[1:] {
			if s.variant != r.keyedClaimVariant(batch, depth) {
				continue
			}
			base := r.find(scKeyedClaim, r.keyedClaimVariant(batch, shallow), s.system)
			if base == nil || base.p50() == 0 || base.p99() == 0 {
				return ""
			}
			return fmt.Sprintf("batch %d at %d messages per key: p50 %.2fx, p99 %.2fx those at %d per key",
				batch, depth, float64(s.p50())/float64(base.p50()), float64(s.p99())/float64(base.p99()), shallow)
		}
	}
	return ""
}

// claimPlansSection prints the recorded plans (first run): the lines that
// show how heads are found, then each whole plan.
func (r *report) claimPlansSection(w func(string, ...any)) {
	if len(r.claimPlans) == 0 {
		return
	}
	w("Plans of one claim (first run), as auto_explain reports them to the session (EXPLAIN ANALYZE, BUFFERS, with timing):\n")
	w("on the deepest table with fresh statistics, and on the shallowest with %s. Walking the heads (`heads_after`,\n", statsBeforeKeys)
	w("`heads_before`) should read a few buffers per key visited, whatever the depth.\n\n")
	for _, p := range r.claimPlans {
		w("**%s, %s: %s**", p.table, p.stats, p.label)
		if p.cache != "" {
			w(" (%s)", p.cache)
		}
		w(":\n\n")
		if p.plan == "" {
			w("%s\n\n", p.err)
			continue
		}
		w("- head walk: %s\n\n", headBuffers(p.plan))
		w("```\n%s\n```\n\n", keyLines(p.plan))
		w("<details><summary>the whole plan</summary>\n\n```\n%s\n```\n\n</details>\n\n", p.plan)
	}
}

// keyLines are a plan's first lines (duration, top node) and its head
// walk, with the buffers each node read.
func keyLines(plan string) string {
	lines := strings.SplitN(plan, "\n", 3)
	out := lines[:min(len(lines), 2)]
	if walk := headWalk(plan); walk != "" {
		out = append(out, walk)
	}
	return strings.Join(out, "\n")
}

// keyedGaps prints, for keyed continuous load below half its unkeyed rate
// (a figure with no target, so no miss), what the server did in the median
// run of each: the costliest statements, scans and slow plans say why.
func (r *report) keyedGaps(w func(string, ...any)) {
	first := true
	for _, s := range r.series {
		if s.scenario != scContinuous || !isKeyed(s.variant) {
			continue
		}
		base := r.find(scContinuous, variantContinuous, s.system)
		x, ok := r.ratio(scContinuous, s.variant, s.system, variantContinuous, s.system)
		if !ok || x >= 0.5 {
			continue
		}
		if first {
			w("## Keyed continuous load far below unkeyed\n\nKeyed continuous load has no target; where it drains less than half the unkeyed rate, what the\n")
			w("server did in the median run of each.\n\n")
			first = false
		}
		w("### %s: %.2fx unkeyed (%s vs %s msg/s)\n\n", s.system, x, num(s.medianRate()), num(base.medianRate()))
		w("keyed (%s):\n\n%s\nunkeyed:\n\n%s\n", s.variant, s.medianSample().evidence, base.medianSample().evidence)
	}
}
