package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/pgoutbox/pgoutbox/internal/benchkit"
	"github.com/pgoutbox/pgoutbox/relay"
)

// runBench measures the library on the operator's own server: its disks,
// network and settings decide what a relay can drain, and no other machine
// can tell. It needs a database URL (outboxctl starts no server) and leaves
// nothing behind: every scenario writes in a scope of its own, deleted at
// the end. The comparison with River and PgQ is `make bench` (the bench
// module), on the same harness.
func runBench(ctx context.Context, args []string, std stdio) error {
	stdout, stderr := std.out, std.errOut
	fs := newFlagSet("bench", "bench --database-url URL [flags]\n\n"+
		"Runs pgoutbox's own benchmark scenarios on the given server and prints a table\n"+
		"(progress on stderr):\n"+
		"  enqueue   single Enqueue per transaction, NOTIFY off / limited / on every enqueue\n"+
		"  burndown  --messages pre-enqueued, drained by --relays relays x --concurrency\n"+
		"  wakeup    an idle relay, one message every 50ms: NOTIFY versus polling\n"+
		"Each scenario writes in a scope of its own, deleted when the command ends.\n"+
		"WAL columns are bytes and records the whole server wrote during the scenario\n"+
		"(other sessions included) per message enqueued or delivered.", stderr)
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
	memProfile := fs.String("memprofile", "", "write an allocation profile of this process to `file` at the end")
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
	case *url == "":
		return usagef("no database: pass --database-url or set DATABASE_URL (outboxctl bench measures an existing server)")
	}
	// A URL that does not parse and a server that does not answer are bad
	// input (exit 2), as for every other command.
	check, err := connect(ctx, *url)
	if err != nil {
		return err
	}
	check.Close()

	stopProfile, err := benchkit.StartCPUProfile(*cpuProfile)
	if err != nil {
		return fmt.Errorf("--cpuprofile: %w", err)
	}
	defer stopProfile()
	h, err := benchkit.Open(ctx, benchkit.Config{
		URL:      *url,
		MaxConns: int32(max(32, *relays*4, maxInt(clientCounts)+4)), //nolint:gosec // small by construction
		Progress: stderr,
	})
	if err != nil {
		return err
	}
	defer h.Close()

	var results []benchkit.Result
	defer func() {
		// Remove what the scenarios wrote, even after a failure or Ctrl-C.
		cleanup, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		for _, r := range results {
			if r.Scope == "" {
				continue // a failed scenario's zero result: never the unscoped store's rows
			}
			if err := h.DeleteScope(cleanup, r.Scope); err != nil {
				fmt.Fprintf(stderr, "outboxctl bench: removing scope %s: %v\n", r.Scope, err)
			}
		}
	}()
	if run["enqueue"] {
		for _, c := range clientCounts {
			for _, mode := range []benchkit.NotifyMode{benchkit.NotifyOff, benchkit.NotifyLimit, benchkit.NotifyEvery} {
				r, err := h.Enqueue(ctx, c, mode, *duration)
				results = append(results, r)
				if err != nil {
					return err
				}
			}
		}
	}
	if run["burndown"] {
		mode := relay.ModeClaim
		if *lockMode {
			mode = relay.ModeLock
		}
		r, err := h.BurnDown(ctx, *messages, *relays, *concurrency, mode)
		results = append(results, r)
		if err != nil {
			return err
		}
	}
	if run["wakeup"] {
		for _, notify := range []bool{true, false} {
			r, err := h.WakeUp(ctx, notify, *poll, *wakeups, 50*time.Millisecond)
			results = append(results, r)
			if err != nil {
				return err
			}
		}
	}
	if err := benchkit.WriteHeapProfile(*memProfile); err != nil {
		return fmt.Errorf("--memprofile: %w", err)
	}

	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(map[string]any{"server": h.Settings, "durability": h.Settings.Durability(), "results": results})
	}
	fmt.Fprintln(stdout, h.Settings.Summary())
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "SCENARIO\tVARIANT\tMESSAGES\tSECONDS\tMSG/S\tP50\tP99\tWAL B/ENQ\tREC/ENQ\tWAL B/DEL\tREC/DEL\t")
	for _, r := range results {
		p50, p99 := "-", "-"
		if r.P50 > 0 || r.P99 > 0 {
			p50, p99 = r.P50.Round(10*time.Microsecond).String(), r.P99.Round(10*time.Microsecond).String()
		}
		eb, er := perMessage(r.EnqueueWAL, r.Enqueued)
		db, dr := perMessage(r.DeliveryWAL, r.Delivered)
		fmt.Fprintf(tw, "%s\t%s\t%d\t%.1f\t%.0f\t%s\t%s\t%s\t%s\t%s\t%s\t\n", r.Scenario, r.Variant, r.Messages, r.Elapsed.Seconds(), r.PerSec, p50, p99, eb, er, db, dr)
	}
	return tw.Flush()
}

// perMessage formats WAL bytes and records per message, or "-".
func perMessage(w benchkit.WAL, n int64) (bytes, records string) {
	b, r, ok := w.PerMessage(n)
	if !ok {
		return "-", "-"
	}
	if !w.RecordsKnown {
		return fmt.Sprintf("%.0f", b), "-"
	}
	return fmt.Sprintf("%.0f", b), fmt.Sprintf("%.1f", r)
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
