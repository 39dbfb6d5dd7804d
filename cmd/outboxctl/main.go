// Command outboxctl is pgoutbox's operator tool: it migrates the schema and
// runs the demo.
//
// Usage:
//
//	outboxctl <command> [flags]
//
// Commands:
//
//	migrate up|down|status|version   manage the pgoutbox schema
//	list                             list messages (filters, pages)
//	get ID                           show one message
//	stats                            counts and ages per lane and target
//	redrive                          send dead letters back to pending
//	purge                            delete old delivered messages (and dead letters)
//	enqueue                          enqueue a message
//	demo                             run the end-to-end demo
//	bench                            run the library's benchmark scenarios
//
// Every command takes --database-url (default $DATABASE_URL); the commands
// on messages take --scope and --json. Exit codes: 0 ok, 1 failure, 2 bad
// input (flags, ids, JSON, durations, an unusable database URL or an
// unreachable server), reported before anything is written.
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
		{"list", "list messages, oldest first, with filters and pages", runList},
		{"get", "show one message", runGet},
		{"stats", "counts and ages per lane and target (--watch to refresh)", runStats},
		{"redrive", "send dead letters back to pending", runRedrive},
		{"purge", "delete old delivered messages (and dead letters) in batches", runPurge},
		{"enqueue", "enqueue a message (payload from --payload or stdin)", runEnqueue},
		{"serve", "serve the web dashboard (read-only unless --enable-writes)", runServe},
		{"demo", "write orders and outbox messages, then deliver them with consumers", runDemo},
		{"bench", "measure enqueue, burn-down and wake-up latency", runBench},
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
		fmt.Fprintf(w, "  %-9s %s\n", c.name, c.summary)
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
