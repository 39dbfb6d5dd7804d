// Command bench measures pgoutbox side by side with River (the leading Go job
// queue on Postgres), PgQ (the log-based queue in PostgreSQL itself) and the
// raw-SQL floor (pgoutbox's own statements issued straight through pgx), in
// one process against one PostgreSQL, and writes BENCHMARKS.md and a chart.
//
//	go run . [-runs 3] [-scenarios ...] [-out ../BENCHMARKS.md] [-chart ../benchmarks.png]
//
// Without DATABASE_URL it starts PostgreSQL with Testcontainers (the image of
// $OUTBOX_TEST_POSTGRES_IMAGE) with durable commits and pg_stat_statements.
// Every run goes through the harness in internal/benchkit: a reset and a
// checkpoint before it, the WAL the server wrote in it, and the evidence
// (checkpoints, scans, autovacuums, wait events, costliest statements) that
// explains an outlier. It lives in a module of its own so that the library
// never depends on River.
package main

import (
	"context"
	"embed"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strings"
	"time"

	"github.com/pgoutbox/pgoutbox/internal/benchkit"
	"github.com/pgoutbox/pgoutbox/internal/benchkit/benchserver"
)

//go:embed sql/*.sql
var sqlFiles embed.FS

type options struct {
	runs          int
	messages      int
	duration      time.Duration
	clientsList   []int
	relaysList    []int
	concurrency   int
	riverWorkers  int
	growthSizes   []int
	growthPending int
	wakeups       int
	pgqTick       time.Duration
	out, chart    string
	smoke         bool
	synchronous   string
	memProfile    string
	systems       map[string]bool
	autoExplain   time.Duration
	// Ordered delivery (issue 10, issue 11 point 6).
	keyed        bool  // keyed variants of enqueue, burn-down and continuous
	keys         int   // keys of the keyed burn-down (messages / keys each) and of continuous
	hotMessages  int   // messages of the hot key
	coldKeys     int   // cold keys beside it
	coldPerKey   int   // messages of each cold key
	hotRelays    int   // relays draining the hot-key scenario
	claimKeys    int   // keys of the keyed claim-latency tables
	claimDepths  []int // messages per key of each claim-latency table
	claimBatches []int // claim sizes of the claim-latency scenario
	claims       int   // timed claims per table and batch size
}

// allSystems name the systems for -systems: pgoutbox in claim mode and in
// lock mode, their raw-SQL floors, River and PgQ.
var allSystems = []string{"pgoutbox", "lock", "floor", "lock-floor", "river", "pgq"} //nolint:gochecknoglobals // fixed list

// systemFlag maps the report's system names to -systems' words.
var systemFlag = map[string]string{ //nolint:gochecknoglobals // fixed table
	sysPgoutbox: "pgoutbox", sysLock: "lock", sysFloor: "floor", sysLockFloor: "lock-floor", sysRiver: "river", sysPgQ: "pgq",
}

// allScenarios are the scenarios in the order they run.
var allScenarios = []string{"enqueue", "burn-down", "continuous", "held-snapshot", "wake-up", "growth", "hot-key", "keyed-claim", "plan-stability", "memory"} //nolint:gochecknoglobals // fixed list

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	flags := flag.NewFlagSet("bench", flag.ContinueOnError)
	flags.SetOutput(stderr)
	var o options
	flags.IntVar(&o.runs, "runs", 3, "repetitions of each scenario (median and spread are reported)")
	flags.IntVar(&o.messages, "messages", 200_000, "messages for burn-down")
	flags.DurationVar(&o.duration, "duration", 5*time.Second, "duration of each enqueue variant (continuous runs three times as long)")
	clients := flags.String("clients", "1,4,16", "client counts for enqueue")
	relays := flags.String("relays", "1,2,4", "relay counts for burn-down")
	flags.IntVar(&o.concurrency, "concurrency", 256, "handler concurrency (and claim batch) of each pgoutbox relay")
	flags.IntVar(&o.riverWorkers, "river-workers", 2000, "River MaxWorkers (River's own bench uses 2000)")
	growth := flags.String("growth", "0,100000,1000000", "delivered rows before the growth scenario")
	flags.IntVar(&o.growthPending, "growth-pending", 100_000, "pending messages in the growth scenario")
	flags.IntVar(&o.wakeups, "wakeups", 200, "messages in the wake-up scenario")
	flags.DurationVar(&o.pgqTick, "pgq-tick", time.Second, "how often the harness calls pgq.ticker(), as pgqd does (its ticker_period, default 1s)")
	flags.StringVar(&o.out, "out", "BENCHMARKS.md", "report to write (empty: none)")
	flags.StringVar(&o.chart, "chart", "benchmarks.png", "chart to write (empty: none)")
	flags.BoolVar(&o.smoke, "smoke", false, "a short run of every scenario and peer, for CI")
	flags.StringVar(&o.synchronous, "synchronous-commit", "on", "synchronous_commit of the container this starts (on: durable)")
	flags.DurationVar(&o.autoExplain, "auto-explain", time.Second, "the container this starts logs the plan (rows, buffers, WAL) of every statement slower than this, for the outliers' evidence (0: off)")
	flags.BoolVar(&o.keyed, "keyed", true, "run the keyed variants of enqueue, burn-down and continuous beside the unkeyed ones")
	flags.IntVar(&o.keys, "keys", 10_000, "ordering keys of the keyed burn-down (each gets -messages / -keys messages) and of keyed continuous load")
	flags.IntVar(&o.hotMessages, "hot-messages", 100_000, "messages of the hot key in the hot-key scenario")
	flags.IntVar(&o.coldKeys, "cold-keys", 1000, "cold keys in the hot-key scenario")
	flags.IntVar(&o.coldPerKey, "cold-per-key", 20, "messages of each cold key in the hot-key scenario")
	flags.IntVar(&o.hotRelays, "hot-relays", 2, "relays draining the hot-key scenario")
	flags.IntVar(&o.claimKeys, "claim-keys", 10_000, "ordering keys of the keyed claim-latency tables")
	claimDepths := flags.String("claim-depths", "1,100", "messages per key of each keyed claim-latency table (the first is the baseline)")
	claimBatches := flags.String("claim-batches", "16,64", "claim sizes of the keyed claim-latency scenario (below 64 the store runs claims as prepared statements)")
	flags.IntVar(&o.claims, "claims", 500, "timed claims per table and batch size in the keyed claim-latency scenario")
	dbURL := flags.String("database-url", os.Getenv("DATABASE_URL"), "PostgreSQL to measure on (default: start one with Testcontainers)")
	cpuProfile := flags.String("cpuprofile", "", "write a CPU profile of the benchmark process (relays, River, clients) to this file")
	flags.StringVar(&o.memProfile, "memprofile", "", "write an allocation profile of the memory scenario's drain to this file")
	only := flags.String("scenarios", strings.Join(allScenarios, ","), "scenarios to run, comma-separated")
	systems := flags.String("systems", strings.Join(allSystems, ","), "systems to run where a scenario compares several, comma-separated")
	if err := flags.Parse(args); err != nil {
		return err
	}
	var err error
	if o.clientsList, err = ints(*clients); err != nil {
		return fmt.Errorf("-clients: %w", err)
	}
	if o.relaysList, err = ints(*relays); err != nil {
		return fmt.Errorf("-relays: %w", err)
	}
	if o.growthSizes, err = ints(*growth); err != nil {
		return fmt.Errorf("-growth: %w", err)
	}
	if o.claimDepths, err = ints(*claimDepths); err != nil {
		return fmt.Errorf("-claim-depths: %w", err)
	}
	if o.claimBatches, err = ints(*claimBatches); err != nil {
		return fmt.Errorf("-claim-batches: %w", err)
	}
	selected := map[string]bool{}
	for _, s := range strings.Split(*only, ",") {
		s = strings.TrimSpace(s)
		if !slices.Contains(allScenarios, s) {
			return fmt.Errorf("-scenarios: unknown scenario %q (want some of %s)", s, strings.Join(allScenarios, ","))
		}
		selected[s] = true
	}
	o.systems = map[string]bool{}
	for _, s := range strings.Split(*systems, ",") {
		s = strings.TrimSpace(s)
		if !slices.Contains(allSystems, s) {
			return fmt.Errorf("-systems: unknown system %q (want some of %s)", s, strings.Join(allSystems, ","))
		}
		o.systems[s] = true
	}
	if o.runs < 1 || o.messages < 1 || o.concurrency < 1 || o.wakeups < 1 || o.duration <= 0 || o.pgqTick <= 0 {
		return fmt.Errorf("-runs, -messages, -concurrency, -wakeups must be at least 1 and -duration, -pgq-tick positive")
	}
	if o.smoke {
		o = smokeOptions(o)
	}
	if err := o.validateKeyed(); err != nil {
		return err
	}

	srv, err := benchserver.Start(ctx, *dbURL, o.synchronous, o.autoExplain, stderr)
	if err != nil {
		return err
	}
	defer func() { _ = srv.Stop() }()
	h, err := benchkit.Open(ctx, benchkit.Config{URL: srv.URL, MaxConns: 64, Progress: stderr, Evidence: true, Logs: srv.Logs})
	if err != nil {
		return err
	}
	defer h.Close()
	if err := migrateRiver(ctx, h.Pool); err != nil {
		return err
	}
	sub, err := fs.Sub(sqlFiles, "sql")
	if err != nil {
		return err
	}
	b := &bencher{ctx: ctx, h: h, o: o, log: stderr, sql: benchkit.NewSQL(sub), url: srv.URL}
	if b.pgq, err = setupPgQ(ctx, b); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "PgQ: %s\n", b.pgq.status())
	stopProfile, err := benchkit.StartCPUProfile(*cpuProfile)
	if err != nil {
		return err
	}
	defer stopProfile()
	r := &report{settings: h.Settings, opts: o, started: time.Now(), pgq: b.pgq.status()}
	b.r = r
	steps := map[string]func() error{
		"enqueue": b.enqueue, "burn-down": b.burnDown, "continuous": b.continuous, "held-snapshot": b.heldSnapshot,
		"wake-up": b.wakeUp, "growth": b.growth, "hot-key": b.hotKey, "keyed-claim": b.keyedClaim,
		"plan-stability": b.planStability, "memory": b.memory,
	}
	for _, name := range allScenarios {
		if !selected[name] {
			continue
		}
		fmt.Fprintf(stderr, "== %s\n", name)
		if err := steps[name](); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		r.ran = append(r.ran, name)
	}
	r.finished = time.Now()
	md := r.markdown()
	fmt.Fprint(stdout, md)
	if o.out != "" {
		old, err := os.ReadFile(o.out)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		// Sections measured by other benchmarks (the dashboard's) live in the
		// same file between keep markers; the new report carries them over.
		md += keptSections(string(old))
		if err := os.WriteFile(o.out, []byte(md), 0o644); err != nil { //nolint:gosec // a report for the repository, world-readable like its other files
			return err
		}
	}
	if o.chart != "" {
		if err := r.writeChart(o.chart); err != nil {
			return err
		}
	}
	return nil
}

// smokeOptions run every scenario and peer briefly: CI checks that the
// comparison builds and runs, not its figures.
func smokeOptions(o options) options {
	o.runs = 1
	o.messages = 5000
	o.duration = 500 * time.Millisecond
	o.clientsList = []int{1, 4}
	o.relaysList = []int{1}
	o.growthSizes = []int{0, 5000}
	o.growthPending = 2000
	o.wakeups = 10
	o.pgqTick = 100 * time.Millisecond
	o.keys = 250 // x 20 = messages
	o.hotMessages = 5000
	o.coldKeys = 50
	o.claimKeys = 500
	o.claimDepths = []int{1, 10}
	o.claims = 30
	return o
}

// validateKeyed checks the ordered-delivery options: every count at least
// one, and no more keys than messages in the keyed burn-down.
func (o options) validateKeyed() error {
	for _, x := range []struct {
		name string
		n    int
	}{
		{"-keys", o.keys}, {"-hot-messages", o.hotMessages}, {"-cold-keys", o.coldKeys}, {"-cold-per-key", o.coldPerKey},
		{"-hot-relays", o.hotRelays}, {"-claim-keys", o.claimKeys}, {"-claims", o.claims},
	} {
		if x.n < 1 {
			return fmt.Errorf("%s must be at least 1, not %d", x.name, x.n)
		}
	}
	if o.keys > o.messages {
		return fmt.Errorf("-keys (%d) must not exceed -messages (%d): the keyed burn-down gives each key -messages / -keys messages", o.keys, o.messages)
	}
	if len(o.claimDepths) < 2 {
		return fmt.Errorf("-claim-depths needs at least two depths to compare, not %v", o.claimDepths)
	}
	for _, n := range append(slices.Clone(o.claimDepths), o.claimBatches...) {
		if n < 1 {
			return fmt.Errorf("-claim-depths and -claim-batches must be at least 1, not %d", n)
		}
	}
	return nil
}

func ints(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		var n int
		if _, err := fmt.Sscanf(strings.TrimSpace(f), "%d", &n); err != nil || n < 0 {
			return nil, fmt.Errorf("%q is not a count", f)
		}
		out = append(out, n)
	}
	return out, nil
}

// bencher runs the scenarios.
type bencher struct {
	ctx context.Context
	h   *benchkit.Harness
	url string
	sql benchkit.SQL
	o   options
	log io.Writer
	r   *report
	pgq *pgq
}

// wants reports whether -systems selects the system (by its report name).
func (b *bencher) wants(system string) bool { return b.o.systems[systemFlag[system]] }

// reset empties every system's tables and checkpoints (see Harness.Reset).
func (b *bencher) reset() error {
	scripts := []string{"reset"}
	if b.pgq.available() {
		scripts = append(scripts, "pgq_reset")
	}
	return b.h.Reset(b.ctx, b.sql, scripts...)
}

// window runs fn in a measured window of the harness and returns its
// evidence; watch names the tables whose counters it reports.
func (b *bencher) window(fn func() error, watch ...string) (benchkit.Evidence, error) {
	w, err := b.h.Begin(b.ctx, watch...)
	if err != nil {
		return benchkit.Evidence{}, err
	}
	if err := fn(); err != nil {
		return benchkit.Evidence{}, err
	}
	return w.End(b.ctx)
}

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
