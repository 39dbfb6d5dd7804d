// Command sinks measures how fast a relay moves messages from the outbox to
// a broker that confirmed them, for each sink, against the same relay with a
// no-op handler, and writes the table into BENCHMARKS.md between markers
// that `make bench` keeps.
//
//	go run ./sinks [-messages 20000] [-runs 3] [-concurrency 16] [-out ../BENCHMARKS.md]
//
// Every run enqueues -messages messages into PostgreSQL (Testcontainers,
// durable commits, or $DATABASE_URL), then starts one relay of the given
// concurrency and times it until the handler has returned nil for every
// message: for a sink, until the broker confirmed each one. The brokers run
// on this machine: an embedded nats-server with JetStream on file storage,
// franz-go's kfake cluster (in-process, in memory), Debian's rabbitmq-server
// (a durable queue), and an HTTP receiver from net/http/httptest.
package main

import (
	"context"
	"embed"
	"flag"
	"fmt"
	"io"
	iofs "io/fs"
	"os"
	"os/signal"
	"time"

	"github.com/pgoutbox/pgoutbox/internal/benchkit"
	"github.com/pgoutbox/pgoutbox/internal/benchkit/benchserver"
)

//go:embed sql/*.sql
var sqlFiles embed.FS

type options struct {
	messages, runs, concurrency int
	out                         string
	smoke                       bool
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "bench sinks:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("sinks", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	fs.IntVar(&o.messages, "messages", 20_000, "messages per run and sink")
	fs.IntVar(&o.runs, "runs", 3, "runs of each sink (median and range are reported)")
	fs.IntVar(&o.concurrency, "concurrency", 16, "relay concurrency: publishes in flight")
	fs.StringVar(&o.out, "out", "../BENCHMARKS.md", "report to write the sink section into (empty: none)")
	fs.BoolVar(&o.smoke, "smoke", false, "300 messages, one run, no report: for CI")
	dbURL := fs.String("database-url", os.Getenv("DATABASE_URL"), "PostgreSQL to measure on (default: start one with Testcontainers)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if o.smoke {
		o.messages, o.runs, o.out = 300, 1, ""
	}
	if o.messages < 1 || o.runs < 1 || o.concurrency < 1 {
		return fmt.Errorf("-messages, -runs and -concurrency must be positive")
	}

	srv, err := benchserver.Start(ctx, *dbURL, "on", 0, stderr)
	if err != nil {
		return err
	}
	defer func() { _ = srv.Stop() }()
	h, err := benchkit.Open(ctx, benchkit.Config{URL: srv.URL, MaxConns: 32, Progress: stderr})
	if err != nil {
		return err
	}
	defer h.Close()
	pool, settings := h.Pool, h.Settings
	sub, err := iofs.Sub(sqlFiles, "sql")
	if err != nil {
		return err
	}
	scripts := benchkit.NewSQL(sub)

	dir, err := os.MkdirTemp("", "pgoutbox-bench-sinks")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(dir) }()
	sinks, closeSinks, err := startSinks(ctx, dir, stderr)
	if err != nil {
		return err
	}
	defer closeSinks()

	r := &report{opts: o, settings: settings, started: time.Now()}
	for run := 1; run <= o.runs; run++ {
		for _, s := range sinks {
			if err := h.Reset(ctx, scripts, "reset"); err != nil {
				return err
			}
			res, err := measure(ctx, pool, s, o, stderr)
			if err != nil {
				return fmt.Errorf("%s, run %d: %w", s.name, run, err)
			}
			fmt.Fprintf(stderr, "  %s run %d: %.0f msg/s (%d messages in %s)\n", s.name, run, res.rate, o.messages, res.elapsed.Round(time.Millisecond))
			r.add(s.name, res.rate)
		}
	}
	r.finished = time.Now()
	md := r.markdown()
	fmt.Fprint(stdout, md)
	if o.out != "" {
		return writeSection(o.out, md)
	}
	return nil
}
