package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	tclog "github.com/testcontainers/testcontainers-go/log"

	"github.com/pgoutbox/pgoutbox/internal/benchkit"
	"github.com/pgoutbox/pgoutbox/internal/pgserver"
	"github.com/pgoutbox/pgoutbox/outbox"
	"github.com/pgoutbox/pgoutbox/relay"
)

func runBench(ctx context.Context, args []string, std stdio) error {
	stdout, stderr := std.out, std.errOut
	fs := newFlagSet("bench", "bench [flags]\n\n"+
		"Runs pgoutbox's own benchmark scenarios and prints a table (progress on stderr):\n"+
		"  enqueue   single Enqueue per transaction, NOTIFY off / limited / on every enqueue\n"+
		"  burndown  --messages pre-enqueued, drained by --relays relays x --concurrency\n"+
		"  wakeup    an idle relay, one message every 50ms: NOTIFY versus polling\n"+
		"Without a database URL it starts PostgreSQL with Testcontainers, with durable\n"+
		"commits (fsync and synchronous_commit on).", stderr)
	url := databaseURLFlag(fs)
	scenarios := fs.String("scenarios", "enqueue,burndown,wakeup", "comma-separated scenarios to run")
	duration := fs.Duration("duration", 5*time.Second, "how long each enqueue variant runs")
	clients := fs.String("clients", "1,16", "comma-separated client counts for enqueue")
	messages := fs.Int("messages", 200_000, "messages for burndown")
	relays := fs.Int("relays", 4, "relays for burndown")
	concurrency := fs.Int("concurrency", 16, "handler concurrency of each burndown relay")
	wakeups := fs.Int("wakeups", 200, "messages for wakeup")
	poll := fs.Duration("poll", time.Second, "poll interval of the polling wakeup variant")
	asJSON := fs.Bool("json", false, "print results as JSON")
	lockMode := fs.Bool("lock-mode", false, "burndown relays in relay.ModeLock (row locks, one write per message)")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of this process to `file` (go tool pprof reads it)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected arguments %q", fs.Args())
	}
	run := map[string]bool{}
	for _, s := range strings.Split(*scenarios, ",") {
		switch s = strings.TrimSpace(s); s {
		case "enqueue", "burndown", "wakeup":
			run[s] = true
		default:
			return usagef("unknown scenario %q: want enqueue, burndown or wakeup", s)
		}
	}
	clientCounts, err := parseInts(*clients)
	if err != nil {
		return usagef("--clients: %v", err)
	}
	switch {
	case *duration <= 0:
		return usagef("--duration must be positive, got %s", *duration)
	case *messages < 1 || *relays < 1 || *concurrency < 1 || *wakeups < 1:
		return usagef("--messages, --relays, --concurrency and --wakeups must be at least 1")
	case *poll < time.Millisecond:
		return usagef("--poll must be at least 1ms, got %s", *poll)
	}

	stopProfile, err := benchkit.StartCPUProfile(*cpuProfile)
	if err != nil {
		return fmt.Errorf("--cpuprofile: %w", err)
	}
	defer stopProfile()
	if *url == "" {
		tclog.SetDefault(tclog.NewNoopLogger())
		fmt.Fprintf(stderr, "no DATABASE_URL: starting PostgreSQL (%s) with Testcontainers, durable settings\n", pgserver.Image())
		srv, err := pgserver.StartContainer(ctx, nil)
		if err != nil {
			return err
		}
		defer func() { _ = srv.Stop() }()
		*url = srv.URL
	}
	cfg, err := pgxpool.ParseConfig(*url)
	if err != nil {
		return usagef("cannot parse the database URL: %v", err)
	}
	cfg.MaxConns = int32(max(32, *relays*4, maxInt(clientCounts)+4)) //nolint:gosec // small by construction
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("connecting to %s: %w", where(cfg.ConnConfig), err)
	}
	defer pool.Close()
	if err := pool.Ping(ctx); err != nil {
		return fmt.Errorf("connecting to %s: %w", where(cfg.ConnConfig), err)
	}
	db := sqlDB(pool)
	err = outbox.Migrate(ctx, db)
	_ = db.Close()
	if err != nil {
		return err
	}
	settings, err := benchkit.ServerSettings(ctx, pool)
	if err != nil {
		return err
	}

	var results []benchkit.Result
	if run["enqueue"] {
		for _, c := range clientCounts {
			for _, mode := range []benchkit.NotifyMode{benchkit.NotifyOff, benchkit.NotifyLimit, benchkit.NotifyEvery} {
				r, err := benchkit.Enqueue(ctx, pool, c, mode, *duration, stderr)
				if err != nil {
					return err
				}
				results = append(results, r)
			}
		}
	}
	if run["burndown"] {
		mode := relay.ModeClaim
		if *lockMode {
			mode = relay.ModeLock
		}
		r, err := benchkit.BurnDown(ctx, pool, *messages, *relays, *concurrency, mode, stderr)
		if err != nil {
			return err
		}
		results = append(results, r)
	}
	if run["wakeup"] {
		for _, notify := range []bool{true, false} {
			r, err := benchkit.WakeUp(ctx, pool, notify, *poll, *wakeups, 50*time.Millisecond, stderr)
			if err != nil {
				return err
			}
			results = append(results, r)
		}
	}

	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(map[string]any{"server": settings, "durability": benchkit.Durability(settings), "results": results})
	}
	fmt.Fprintf(stdout, "PostgreSQL %s, %s, full_page_writes %s, shared_buffers %s\n",
		settings.ServerVersion, benchkit.Durability(settings), settings.FullPageWrites, settings.SharedBuffers)
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SCENARIO\tVARIANT\tMESSAGES\tSECONDS\tMSG/S\tP50\tP99")
	for _, r := range results {
		p50, p99 := "-", "-"
		if r.P50 > 0 || r.P99 > 0 {
			p50, p99 = r.P50.Round(10*time.Microsecond).String(), r.P99.Round(10*time.Microsecond).String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%.1f\t%.0f\t%s\t%s\n", r.Scenario, r.Variant, r.Messages, r.Elapsed.Seconds(), r.PerSec, p50, p99)
	}
	return tw.Flush()
}

func parseInts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		var n int
		if _, err := fmt.Sscanf(strings.TrimSpace(f), "%d", &n); err != nil || n < 1 || n > 1000 {
			return nil, fmt.Errorf("%q is not a count between 1 and 1000", f)
		}
		out = append(out, n)
	}
	return out, nil
}

func maxInt(xs []int) int {
	m := 0
	for _, x := range xs {
		m = max(m, x)
	}
	return m
}
