// Command bench measures pgoutbox side by side with River (the leading Go job
// queue on Postgres) and with the raw-SQL floor (pgoutbox's own statements
// issued straight through pgx), in one process against one PostgreSQL, and
// writes BENCHMARKS.md and a chart.
//
//	go run . [-runs 3] [-out ../BENCHMARKS.md] [-chart ../benchmarks.png]
//
// Without DATABASE_URL it starts PostgreSQL with Testcontainers (the image of
// $OUTBOX_TEST_POSTGRES_IMAGE) with durable commits. It lives in a module of
// its own so that the library never depends on River.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	iofs "io/fs"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	tclog "github.com/testcontainers/testcontainers-go/log"

	"github.com/pgoutbox/pgoutbox/internal/benchkit"
	"github.com/pgoutbox/pgoutbox/internal/pgserver"
	"github.com/pgoutbox/pgoutbox/outbox"
)

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
	out, chart    string
	smoke         bool
	synchronous   string
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	fs.IntVar(&o.runs, "runs", 3, "repetitions of each scenario (median and spread are reported)")
	fs.IntVar(&o.messages, "messages", 200_000, "messages for burn-down")
	fs.DurationVar(&o.duration, "duration", 5*time.Second, "duration of each enqueue and continuous variant")
	clients := fs.String("clients", "1,4,16", "client counts for enqueue")
	relays := fs.String("relays", "1,2,4", "relay counts for burn-down")
	fs.IntVar(&o.concurrency, "concurrency", 256, "handler concurrency (and claim batch) of each pgoutbox relay")
	fs.IntVar(&o.riverWorkers, "river-workers", 2000, "River MaxWorkers (River's own bench uses 2000)")
	growth := fs.String("growth", "0,100000,1000000", "delivered rows before the growth scenario")
	fs.IntVar(&o.growthPending, "growth-pending", 100_000, "pending messages in the growth scenario")
	fs.IntVar(&o.wakeups, "wakeups", 200, "messages in the wake-up scenario")
	fs.StringVar(&o.out, "out", "BENCHMARKS.md", "report to write (empty: none)")
	fs.StringVar(&o.chart, "chart", "benchmarks.png", "chart to write (empty: none)")
	fs.BoolVar(&o.smoke, "smoke", false, "a ten-second run of every scenario, for CI")
	fs.StringVar(&o.synchronous, "synchronous-commit", "on", "synchronous_commit of the container this starts (on: durable)")
	dbURL := fs.String("database-url", os.Getenv("DATABASE_URL"), "PostgreSQL to measure on (default: start one with Testcontainers)")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the benchmark process (relays, River, clients) to this file")
	only := fs.String("scenarios", "enqueue,burn-down,continuous,wake-up,growth,memory", "scenarios to run")
	if err := fs.Parse(args); err != nil {
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
	if o.smoke {
		o = smokeOptions(o)
	}

	url := *dbURL
	if url == "" {
		tclog.SetDefault(tclog.NewNoopLogger())
		fmt.Fprintf(stderr, "starting PostgreSQL (%s) with Testcontainers, synchronous_commit=%s\n", pgserver.Image(), o.synchronous)
		srv, err := pgserver.StartContainer(ctx, pgserver.Settings{"synchronous_commit=" + o.synchronous})
		if err != nil {
			return err
		}
		defer func() { _ = srv.Stop() }()
		url = srv.URL
	}
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return err
	}
	cfg.MaxConns = 64
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return err
	}
	defer pool.Close()
	if err := outbox.Migrate(ctx, stdlib.OpenDBFromPool(pool)); err != nil {
		return err
	}
	if err := migrateRiver(ctx, pool); err != nil {
		return err
	}
	settings, err := benchkit.ServerSettings(ctx, pool)
	if err != nil {
		return err
	}
	stopProfile, err := benchkit.StartCPUProfile(*cpuProfile)
	if err != nil {
		return err
	}
	defer stopProfile()
	r := &report{settings: settings, opts: o, started: time.Now()}
	b := &bencher{ctx: ctx, pool: pool, o: o, log: stderr, r: r}
	for _, step := range []struct {
		name string
		fn   func() error
	}{
		{"enqueue", b.enqueue},
		{"burn-down", b.burnDown},
		{"continuous", b.continuous},
		{"wake-up", b.wakeUp},
		{"growth", b.growth},
		{"memory", b.memory},
	} {
		if !slices.Contains(strings.Split(*only, ","), step.name) {
			continue
		}
		fmt.Fprintf(stderr, "== %s\n", step.name)
		if err := step.fn(); err != nil {
			return fmt.Errorf("%s: %w", step.name, err)
		}
	}
	r.finished = time.Now()
	md := r.markdown()
	fmt.Fprint(stdout, md)
	if o.out != "" {
		old, err := os.ReadFile(o.out)
		if err != nil && !errors.Is(err, iofs.ErrNotExist) {
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

func smokeOptions(o options) options {
	o.runs = 1
	o.messages = 5000
	o.duration = 500 * time.Millisecond
	o.clientsList = []int{1, 4}
	o.relaysList = []int{1}
	o.growthSizes = []int{0, 5000}
	o.growthPending = 2000
	o.wakeups = 10
	return o
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
	ctx  context.Context
	pool *pgxpool.Pool
	o    options
	log  io.Writer
	r    *report
}

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
