package main

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgoutbox/pgoutbox/internal/benchkit"
	"github.com/pgoutbox/pgoutbox/outbox"
	"github.com/pgoutbox/pgoutbox/relay"
)

// Ordered delivery's figures: issue 10's performance targets (keyed
// burn-down, a hot key among cold ones, claim latency against the depth of
// the keys, keyed Enqueue) and issue 11's keyed continuous load. Keyed
// variants run beside their unkeyed baselines in the same rounds, so that
// every ratio compares runs of one process on one server minutes apart.

const (
	scHotKey     = "hot key"
	scKeyedClaim = "keyed claim latency"

	sysEnqueueKeyed  = "pgoutbox Enqueue, keyed (a key per client)"
	sysEnqueueOneKey = "pgoutbox Enqueue, keyed (one key, every client)"

	// claimWarmUp claims run before the timed ones on each connection:
	// more than the five custom plans PostgreSQL makes before it may switch
	// a prepared statement to its generic plan, so that claims below
	// outbox's fresh-plan limit (64) are timed with the plan they keep.
	claimWarmUp = 10
)

// sqlExec runs one of the benchmark's SQL files with the benchmark's lane,
// target and payload as parameters.
func (b *bencher) sqlExec(name string, more ...any) error {
	args := map[string]any{"lane": lane, "target": target, "payload": string(payload(0))}
	for i := 0; i+1 < len(more); i += 2 {
		args[more[i].(string)] = more[i+1]
	}
	return b.sql.Exec(b.ctx, b.h.Pool, name, args)
}

// keyedRun is a keyed step's run: after runSteps' reset it gives the table
// planner statistics that have seen keyed messages (sql/keyed_stats.sql),
// as a keyed deployment's table has after its first ANALYZE, instead of
// those the run before left, which after an unkeyed run say that no
// message has a key. That case is measured apart, in the keyed claim
// scenario's stale-statistics variant.
func keyedRun(b *bencher, run func() (sample, error)) func() (sample, error) {
	return func() (sample, error) {
		if err := b.sqlExec("keyed_stats"); err != nil {
			return sample{}, err
		}
		return run()
	}
}

// enqueueKeyed runs the keyed Enqueue variants at c clients, right after
// the unkeyed one: a key of its own per client (no two transactions ever
// wait for each other's key lock), and, with several clients, one key for
// all (they take turns by design: a key's ids follow commit order).
func (b *bencher) enqueueKeyed(store *outbox.PostgresStore, c int, variant string) error {
	if !b.o.keyed {
		return nil
	}
	enqueue := func(key func(client int) string) func(ctx context.Context, client int, n *atomic.Int64) error {
		return func(ctx context.Context, client int, n *atomic.Int64) error {
			return b.inTx(ctx, func(tx pgx.Tx) error {
				_, err := store.WithTx(tx).Enqueue(ctx, outbox.Draft{Lane: lane, Target: target, OrderingKey: key(client), Payload: payload(int(n.Add(1)))})
				return err
			})
		}
	}
	s, err := b.timedEnqueue(c, enqueue(func(client int) string { return fmt.Sprintf("client-%d", client) }))
	if err != nil {
		return err
	}
	b.r.add(scEnqueueOne, variant, sysEnqueueKeyed, s)
	if c < 2 {
		return nil
	}
	s, err = b.timedEnqueue(c, enqueue(func(int) string { return "one-key" }))
	if err != nil {
		return err
	}
	b.r.add(scEnqueueOne, variant, sysEnqueueOneKey, s)
	return nil
}

// keyedBurnDownSteps are the keyed burn-down at one relay count: keys x
// (messages / keys) messages, the same total as the unkeyed burn-down.
func (b *bencher) keyedBurnDown(run, relays int) error {
	if !b.o.keyed {
		return nil
	}
	keys, perKey := b.o.keys, b.o.messages/b.o.keys
	burn := func(mode relay.Mode) func() (sample, error) {
		return func() (sample, error) {
			res, err := b.h.BurnDownKeyed(b.ctx, keys, perKey, relays, b.o.concurrency, mode)
			return fromResult(res), err
		}
	}
	return b.runSteps(scBurnDown, b.r.keyedRelayVariant(relays), fmt.Sprintf("burn-down run %d, %d relay(s), keyed", run+1, relays), []step{
		{sysPgoutbox, keyedRun(b, burn(relay.ModeClaim))},
		{sysLock, keyedRun(b, burn(relay.ModeLock))},
	})
}

// continuousKeyedSteps are the continuous run's keyed variant: the same
// producers and relays, every message with an ordering key.
func (b *bencher) continuousKeyedSteps() []step {
	return []step{
		{sysPgoutbox, keyedRun(b, func() (sample, error) { return b.continuousPgoutbox(relay.ModeClaim, true) })},
		{sysLock, keyedRun(b, func() (sample, error) { return b.continuousPgoutbox(relay.ModeLock, true) })},
	}
}

// producerKey is the ordering key of a continuous producer's i-th message:
// producer p owns the keys congruent to p modulo the producer count and
// cycles through them, so that each batch holds produceBatch distinct keys
// (as many advisory locks) and producers never wait for each other's keys.
func producerKey(keys, p, i int) string {
	own := max(1, keys/producers)
	return benchkit.KeyName(p + producers*(i%own))
}

// hotKeyName is the hot key, in the middle of the cold keys' order (claims
// walk keys in order, round robin).
func hotKeyName(coldKeys int) string { return benchkit.KeyName(coldKeys/2) + "-hot" }

// hotKeyDrafts are coldKeys x coldPerKey cold messages (message-major, as
// KeyedDrafts) and hot messages of one key, interleaved in proportion, as
// if enqueued together.
func hotKeyDrafts(coldKeys, coldPerKey, hot int) []outbox.Draft {
	cold := benchkit.KeyedDrafts(coldKeys, coldPerKey)
	out := make([]outbox.Draft, 0, len(cold)+hot)
	key := hotKeyName(coldKeys)
	c, h := 0, 0
	for c < len(cold) || h < hot {
		// Take a cold draft while the cold share so far is behind its
		// share of the whole.
		if c < len(cold) && (h == hot || c*(len(cold)+hot) <= (c+h)*len(cold)) {
			out = append(out, cold[c])
			c++
			continue
		}
		out = append(out, outbox.Draft{Lane: lane, Target: target, OrderingKey: key, Payload: payload(len(cold) + h)})
		h++
	}
	return out
}

const (
	variantColdAlone = "cold keys alone"
	variantColdHot   = "cold keys beside the hot key"
)

// hotKey: coldKeys keys of coldPerKey messages each, drained alone, and
// drained again with a hot key of hotMessages messages enqueued among them.
// The rate is cold messages per second until the last cold message was
// handled: the hot key, served one message at a time, must not slow the
// others down (issue 10: at least 0.9x).
func (b *bencher) hotKey() error {
	for run := range b.o.runs {
		for _, hot := range []int{0, b.o.hotMessages} {
			variant := variantColdAlone
			if hot > 0 {
				variant = variantColdHot
			}
			if err := b.runSteps(scHotKey, variant, fmt.Sprintf("hot key run %d, %s", run+1, variant), []step{
				{sysPgoutbox, keyedRun(b, func() (sample, error) { return b.hotKeyRun(relay.ModeClaim, hot) })},
				{sysLock, keyedRun(b, func() (sample, error) { return b.hotKeyRun(relay.ModeLock, hot) })},
			}); err != nil {
				return err
			}
		}
	}
	return nil
}

func (b *bencher) hotKeyRun(mode relay.Mode, hot int) (sample, error) {
	var s sample
	store, err := outbox.NewPostgresStore(b.h.Pool, outbox.WithNotify(false)).Scoped(benchkit.NewScope("bench-hotkey"))
	if err != nil {
		return s, err
	}
	drafts := hotKeyDrafts(b.o.coldKeys, b.o.coldPerKey, hot)
	fill, err := b.window(func() error { return benchkit.FillDrafts(b.ctx, store, drafts) })
	if err != nil {
		return s, err
	}
	s.enqueued, s.enqWAL = int64(len(drafts)), fill.WAL
	cold := b.o.coldKeys * b.o.coldPerKey
	hotKey := hotKeyName(b.o.coldKeys)
	var res benchkit.Result
	ev, err := b.window(func() error {
		res, err = benchkit.DrainUntil(b.ctx, store, benchkit.DrainConfig{
			Total: cold, Relays: b.o.hotRelays, Concurrency: b.o.concurrency, Mode: mode,
			Counts: func(m outbox.Message) bool { return m.OrderingKey != hotKey },
			Check:  benchkit.NewOrderCheck(), Progress: b.log,
		})
		return err
	}, table)
	if err != nil {
		return s, err
	}
	s.rate, s.delivered, s.delWAL, s.evidence = res.PerSec, res.Delivered, ev.WAL, ev
	s.hotDelivered = res.Delivered - int64(cold)
	return s, nil
}

// keyedClaim measures the latency of one claim on a table of keyed pending
// messages: claimKeys keys at each depth of claimDepths (the same keys,
// deeper), for each batch size of claimBatches, planned on statistics of
// the table as it is (ANALYZE after the fill). Picking the head of a key
// must not cost the depth of the key (issue 10: the deepest table at most
// 1.3x the shallowest).
//
// The shallowest table is first measured on planner statistics from before
// any key (sql/unkeyed_stats.sql, autovacuum off so that no ANALYZE
// replaces them): what a service that turns ordering keys on runs with
// until its table's next ANALYZE. Those claims are slow if a plan made on
// them walks the keys with anything but one index probe per key, so fewer
// are timed.
func (b *bencher) keyedClaim() error {
	stale := staleClaims(b.o.claims)
	for run := range b.o.runs {
		for di, depth := range b.o.claimDepths {
			if err := b.reset(); err != nil {
				return err
			}
			first := di == 0
			if first {
				for _, script := range []string{"autovacuum_off", "unkeyed_stats"} {
					if err := b.sqlExec(script); err != nil {
						return err
					}
				}
			}
			fmt.Fprintf(b.log, "  keyed claim run %d: filling %d keys x %d\n", run+1, b.o.claimKeys, depth)
			if err := b.sqlExec("keyed_fill", "keys", b.o.claimKeys, "per_key", depth); err != nil {
				return err
			}
			if first {
				if err := b.sqlExec("vacuum_only"); err != nil {
					return err
				}
				for _, batch := range b.o.claimBatches {
					variant := b.r.keyedClaimStaleVariant(batch, depth)
					s, err := b.keyedClaimLoop(batch, stale, run == 0, b.r.keyedClaimTable(depth), statsBeforeKeys)
					if err != nil {
						return err
					}
					b.r.add(scKeyedClaim, variant, sysPgoutbox, s)
					fmt.Fprintf(b.log, "  keyed claim run %d, %s: p50 %s, p99 %s\n", run+1, variant, s.p50, s.p99)
				}
				if err := b.sqlExec("autovacuum_on"); err != nil {
					return err
				}
			}
			if err := b.sqlExec("vacuum"); err != nil {
				return err
			}
			for _, batch := range b.o.claimBatches {
				// The plans of the deepest table, once.
				explain := run == 0 && di == len(b.o.claimDepths)-1
				s, err := b.keyedClaimLoop(batch, b.o.claims, explain, b.r.keyedClaimTable(depth), statsFresh)
				if err != nil {
					return err
				}
				variant := b.r.keyedClaimVariant(batch, depth)
				b.r.add(scKeyedClaim, variant, sysPgoutbox, s)
				fmt.Fprintf(b.log, "  keyed claim run %d, %s: p50 %s, p99 %s\n", run+1, variant, s.p50, s.p99)
			}
		}
	}
	return nil
}

// staleClaims is how many claims are timed on statistics from before any
// key: a plan that walks keys by anything but one index probe per key
// takes hundreds of milliseconds a claim there.
func staleClaims(claims int) int { return max(10, claims/50) }

// The planner statistics a keyed claim runs on.
const (
	statsFresh      = "statistics of the table as it is"
	statsBeforeKeys = "statistics from before any key"
)

// keyedClaimLoop times claims claims of batch messages on one
// connection, after claimWarmUp untimed ones. Each claim runs in a
// transaction that is rolled back, so every claim sees the same table (the
// same keys, at the same depth): a claim that committed would empty the
// keys of the shallow table as it went. The store's round-robin key cursor
// still moves on after each claim, so the claims walk the whole key space.
// With explain, it also records the plan of one claim (auto_explain, as
// EXPLAIN (ANALYZE, BUFFERS) would print it) as the store runs it, and for
// a batch below outbox's fresh-plan limit the generic plan too.
func (b *bencher) keyedClaimLoop(batch, claims int, explain bool, where, stats string) (sample, error) {
	var s sample
	var plans []claimPlan
	ev, err := b.window(func() error {
		cfg, err := pgx.ParseConfig(b.url)
		if err != nil {
			return err
		}
		// The harness's session name: the window waits for it to close
		// and counts its work.
		cfg.RuntimeParams["application_name"] = b.h.SessionName()
		var (
			mu      sync.Mutex
			notices []string
		)
		cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) {
			mu.Lock()
			notices = append(notices, n.Message)
			mu.Unlock()
		}
		conn, err := pgx.ConnectConfig(b.ctx, cfg)
		if err != nil {
			return err
		}
		defer func() { _ = conn.Close(b.ctx) }()
		store := outbox.NewPostgresStore(conn, outbox.WithNotify(false))
		req := outbox.ClaimRequest{Lane: lane, Target: target, Limit: batch, Lease: time.Hour, ConsumerID: "keyed-claim"}
		claim := func() (time.Duration, int, error) {
			tx, err := conn.Begin(b.ctx)
			if err != nil {
				return 0, 0, err
			}
			defer func() { _ = tx.Rollback(b.ctx) }()
			t0 := time.Now()
			msgs, _, err := store.WithTx(tx).ClaimAndAck(b.ctx, req, nil)
			d := time.Since(t0)
			if err == nil && len(msgs) != batch {
				err = fmt.Errorf("keyed claim: %d messages claimed, want %d", len(msgs), batch)
			}
			return d, len(msgs), err
		}
		for range claimWarmUp {
			if _, _, err := claim(); err != nil {
				return err
			}
		}
		lat := make([]time.Duration, 0, claims)
		var total time.Duration
		claimed := 0
		for range claims {
			d, n, err := claim()
			if err != nil {
				return err
			}
			lat = append(lat, d)
			total += d
			claimed += n
		}
		s.p50, s.p99 = benchkit.Percentiles(lat)
		s.rate = benchkit.Rate(int64(claimed), total)
		if !explain {
			return nil
		}
		plans, err = b.claimPlans(conn, batch, claimWarmUp+claims, claimPlan{table: where, stats: stats}, claim, func() []string {
			mu.Lock()
			defer mu.Unlock()
			out := notices
			notices = nil
			return out
		})
		return err
	}, table)
	if err != nil {
		return s, err
	}
	s.evidence = ev
	b.r.claimPlans = append(b.r.claimPlans, plans...)
	return s, nil
}

// claimPlan is one claim's plan.
type claimPlan struct {
	label string
	short string // the label in a few words, for the targets table
	table string // the table it ran on
	stats string // the planner statistics it was planned on: statsFresh or statsBeforeKeys
	// cache says how the connection's prepared claim was planned so far
	// (pg_prepared_statements), for claims below the fresh-plan limit.
	cache string
	plan  string // the plan, from auto_explain's notice
	err   string // why there is no plan
}

// claimPlans runs one claim with auto_explain reporting its plan to this
// session as a notice, and, below the fresh-plan limit, one more with the
// generic plan forced. auto_explain needs a superuser (LOAD and its
// settings); on a server where that fails, the plan says why.
func (b *bencher) claimPlans(conn *pgx.Conn, batch, ran int, on claimPlan, claim func() (time.Duration, int, error), notices func() []string) ([]claimPlan, error) {
	ctx := b.ctx
	prepared := batch < freshPlanLimit
	cache := ""
	if prepared {
		var generic, custom int64
		err := conn.QueryRow(ctx, `SELECT coalesce(sum(generic_plans), 0)::bigint, coalesce(sum(custom_plans), 0)::bigint
			FROM pg_prepared_statements WHERE statement LIKE '%name: MessageClaim :many%'`).Scan(&generic, &custom)
		if err != nil {
			return nil, err
		}
		cache = fmt.Sprintf("the connection's prepared claim so far: %d executions with the generic plan, %d with a custom plan", generic, custom)
	}
	for _, st := range []string{
		"LOAD 'auto_explain'",
		"SET auto_explain.log_analyze = on", "SET auto_explain.log_buffers = on", "SET auto_explain.log_timing = on",
		"SET auto_explain.log_nested_statements = off", "SET auto_explain.log_format = 'text'",
		"SET auto_explain.log_level = 'notice'", "SET client_min_messages = 'notice'",
		"SET auto_explain.log_min_duration = 0",
	} {
		if _, err := conn.Exec(ctx, st); err != nil {
			why := fmt.Sprintf("no plan: %s failed: %v", st, err)
			on.label, on.short, on.cache, on.err = fmt.Sprintf("batch %d", batch), fmt.Sprintf("batch %d", batch), cache, why
			return []claimPlan{on}, nil
		}
	}
	defer func() { _, _ = conn.Exec(ctx, "RESET auto_explain.log_min_duration") }()
	one := func(label, short string) (claimPlan, error) {
		notices()
		if _, _, err := claim(); err != nil {
			return claimPlan{}, err
		}
		p := on
		p.label, p.short, p.cache = label, short, cache
		for _, n := range notices() {
			if strings.Contains(n, "name: MessageClaim") && strings.Contains(n, "plan:") {
				p.plan = planText(n)
			}
		}
		if p.plan == "" {
			p.err = "auto_explain sent no plan"
		}
		return p, nil
	}
	var out []claimPlan
	label := fmt.Sprintf("batch %d, as the store runs it (a fresh plan: an unnamed statement, planned for its parameters)", batch)
	short := fmt.Sprintf("batch %d planned per execution", batch)
	if prepared {
		label = fmt.Sprintf("batch %d, as the store runs it (a prepared statement, after %d executions)", batch, ran)
		short = fmt.Sprintf("batch %d prepared", batch)
	}
	p, err := one(label, short)
	if err != nil {
		return nil, err
	}
	out = append(out, p)
	if prepared {
		if _, err := conn.Exec(ctx, "SET plan_cache_mode = force_generic_plan"); err != nil {
			return nil, err
		}
		p, err := one(fmt.Sprintf("batch %d, its generic plan (plan_cache_mode = force_generic_plan)", batch), fmt.Sprintf("batch %d generic plan", batch))
		if _, rerr := conn.Exec(ctx, "RESET plan_cache_mode"); rerr != nil && err == nil {
			err = rerr
		}
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// freshPlanLimit is outbox's freshPlanMinLimit: claims of at least this
// many messages are planned afresh, smaller ones run prepared.
const freshPlanLimit = 64

// planText is the plan of an auto_explain message: its first line (the
// duration) and the plan, without the query text between them.
func planText(msg string) string {
	first, rest, _ := strings.Cut(msg, "\n")
	return first + "\n" + benchkit.WithoutQueryText(rest)
}
