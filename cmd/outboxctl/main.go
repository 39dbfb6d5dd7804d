// Command outboxctl is pgoutbox's operator tool: what an operator needs to
// run a pgoutbox table in production, from a shell or cron, against the
// server that --database-url (default $DATABASE_URL) names.
//
// Usage:
//
//	outboxctl <command> [flags]
//
// Commands:
//
//	migrate up|down|status|version   apply, roll back or inspect the schema, with the
//	                                 same migrations and lock as outbox.Migrate
//	list                             messages oldest first, filtered by status, lane,
//	                                 target and ordering key, paged by id
//	get ID                           one message with its ordering key, headers, last
//	                                 error and payload
//	stats                            per lane and target: pending, due, oldest due age,
//	                                 claimed, expired leases, dead letters (--watch)
//	redrive                          dead letters back to pending with fresh attempts,
//	                                 by id or by lane, target and error text
//	release-key KEY                  let an ordering key held by a dead letter move on:
//	                                 its next message is delivered, the dead letter stays
//	purge                            delete finished messages older than a duration,
//	                                 in batches of 1000 (--dead-letters, --dry-run)
//	enqueue                          enqueue a message by hand (payload from stdin),
//	                                 with an ordering key and headers if given
//	serve                            the web dashboard (read-only unless --enable-writes)
//	bench                            measure enqueue, burn-down and wake-up latency, with
//	                                 the WAL each writes, on this server; leaves nothing
//
// The message commands take --scope (a tenant) and --json (for scripts; claim
// tokens are never printed). Exit codes: 0 ok, 1 failure, 2 bad input (flags,
// ids, JSON, durations, an unusable database URL or an unreachable server),
// reported before anything is written.
//
// outboxctl starts no database server: the demo (go run ./examples/demo,
// `make demo`) and the comparison with River and PgQ (`make bench`) are
// programs of their own, so that this binary does not carry Testcontainers
// and its container stack.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// usageError marks errors in what the user typed; they exit with code 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, stdio stdio) error
}

// stdio is a command's standard streams.
type stdio struct {
	in          io.Reader
	out, errOut io.Writer
}

func commands() []command {
	return []command{
		{"migrate", "apply, roll back or inspect the pgoutbox schema", runMigrate},
		{"list", "list messages, oldest first, with filters (ordering key among them) and pages", runList},
		{"get", "show one message", runGet},
		{"stats", "counts and ages per lane and target (--watch to refresh)", runStats},
		{"redrive", "send dead letters back to pending", runRedrive},
		{"release-key", "let an ordering key held by a dead letter move on", runReleaseKey},
		{"purge", "delete old delivered messages (and dead letters) in batches", runPurge},
		{"enqueue", "enqueue a message (payload from --payload or stdin; --ordering-key, --header)", runEnqueue},
		{"serve", "serve the web dashboard (read-only unless --enable-writes)", runServe},
		{"bench", "measure enqueue, burn-down and wake-up latency on this server", runBench},
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], stdio{in: os.Stdin, out: os.Stdout, errOut: os.Stderr})
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, std stdio) int {
	stderr := std.errOut
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		printUsage(stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	for _, c := range commands() {
		if c.name != args[0] {
			continue
		}
		err := c.run(ctx, args[1:], std)
		var uerr usageError
		switch {
		case err == nil:
			return 0
		case errors.Is(err, flag.ErrHelp):
			return 0
		case errors.As(err, &uerr):
			fmt.Fprintf(stderr, "outboxctl %s: %v\n", c.name, err)
			return 2
		default:
			fmt.Fprintf(stderr, "outboxctl %s: %v\n", c.name, err)
			return 1
		}
	}
	fmt.Fprintf(stderr, "outboxctl: unknown command %q\n\n", args[0])
	printUsage(stderr)
	return 2
}

func printUsage(w io.Writer) {
	fmt.Fprintln(w, "outboxctl: operate a pgoutbox transactional outbox")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Usage: outboxctl <command> [flags]")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Commands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-11s  %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Run 'outboxctl <command> --help' for a command's flags.")
	fmt.Fprintln(w, "The database comes from --database-url or $DATABASE_URL.")
}

// newFlagSet returns a flag set that reports errors instead of exiting, and
// prints usage to stderr.
func newFlagSet(name, usage string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("outboxctl "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: outboxctl %s\n\n", usage)
		fs.PrintDefaults()
	}
	return fs
}

// parse parses flags, turning flag errors into usage errors. Flags may come
// before or after the positional arguments (`outboxctl get 42 --json`), as
// in most CLIs; the standard flag package stops at the first positional one.
// "--" ends the flags.
func parse(fs *flag.FlagSet, args []string) error {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return err
			}
			return usageError{err}
		}
		rest := fs.Args()
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			positional = append(positional, rest...)
			break
		}
		if len(rest) == 0 {
			break
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
	// Leave the positional arguments where callers read them: fs.Args().
	return fs.Parse(append([]string{"--"}, positional...))
}

func databaseURLFlag(fs *flag.FlagSet) *string {
	return fs.String("database-url", os.Getenv("DATABASE_URL"), "PostgreSQL connection string (default $DATABASE_URL)")
}
