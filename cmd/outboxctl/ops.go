package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgoutbox/pgoutbox/internal/validate"
	"github.com/pgoutbox/pgoutbox/outbox"
)

// storeFlags are the flags of every command that works on messages.
type storeFlags struct {
	url   *string
	scope *string
	json  *bool
}

func addStoreFlags(fs *flag.FlagSet) storeFlags {
	return storeFlags{
		url:   databaseURLFlag(fs),
		scope: fs.String("scope", "", "tenant scope to work in (default: the unscoped store)"),
		json:  fs.Bool("json", false, "print JSON for scripts instead of a table"),
	}
}

// open checks the scope (a usage error, before connecting), connects, and
// returns the store. The caller closes the pool.
func (f storeFlags) open(ctx context.Context) (*pgxpool.Pool, *outbox.PostgresStore, error) {
	if *f.scope != "" {
		if err := outbox.ValidateScope(*f.scope); err != nil {
			return nil, nil, usageError{err}
		}
	}
	pool, err := connect(ctx, *f.url)
	if err != nil {
		return nil, nil, err
	}
	store := outbox.NewPostgresStore(pool)
	if *f.scope != "" {
		if store, err = store.Scoped(*f.scope); err != nil {
			pool.Close()
			return nil, nil, usageError{err}
		}
	}
	return pool, store, nil
}

// call opens the store the flags name, runs one operation on it and closes
// it again. Bad input the database found comes back as a usage error (see
// asUsage).
func call[T any](ctx context.Context, f storeFlags, op func(*outbox.PostgresStore) (T, error)) (T, error) {
	pool, store, err := f.open(ctx)
	if err != nil {
		var zero T
		return zero, err
	}
	defer pool.Close()
	res, err := op(store)
	return res, asUsage(err)
}

// asUsage turns validation errors and dedupe conflicts (bad input the
// database found) into usage errors (exit 2).
func asUsage(err error) error {
	if errors.Is(err, outbox.ErrValidation) || errors.Is(err, outbox.ErrConflict) {
		return usageError{err}
	}
	return err
}

// messageJSON is a message as scripts see it.
type messageJSON struct {
	ID          string          `json:"id"`
	Lane        string          `json:"lane"`
	Target      string          `json:"target"`
	Status      outbox.Status   `json:"status"`
	Payload     json.RawMessage `json:"payload"`
	DedupeKey   string          `json:"dedupe_key,omitempty"`
	OrderingKey string          `json:"ordering_key,omitempty"`
	// OrderingKeyReleased is outbox.Message.OrderingKeyReleased: true only
	// for a dead letter whose key was released. A keyed dead letter with
	// false still holds its key: the key's later messages wait.
	OrderingKeyReleased bool              `json:"ordering_key_released"`
	Headers             map[string]string `json:"headers,omitempty"`
	AvailableAt         time.Time         `json:"available_at"`
	AttemptCount        int               `json:"attempt_count"`
	MaxAttempts         int               `json:"max_attempts"`
	ClaimedBy           string            `json:"claimed_by,omitempty"`
	LeaseExpiresAt      *time.Time        `json:"lease_expires_at,omitempty"`
	LastError           string            `json:"last_error,omitempty"`
	CreatedAt           time.Time         `json:"created_at"`
	UpdatedAt           time.Time         `json:"updated_at"`
}

// toJSON leaves the claim token out: output is for operators and logs.
func toJSON(m outbox.Message) messageJSON {
	j := messageJSON{
		ID: m.ID, Lane: m.Lane, Target: m.Target, Status: m.Status, Payload: m.Payload, DedupeKey: m.DedupeKey,
		OrderingKey: m.OrderingKey, OrderingKeyReleased: m.OrderingKeyReleased, Headers: m.Headers,
		AvailableAt: m.AvailableAt.UTC(), AttemptCount: m.AttemptCount, MaxAttempts: m.MaxAttempts,
		ClaimedBy: m.ClaimedBy, LastError: m.LastError, CreatedAt: m.CreatedAt.UTC(), UpdatedAt: m.UpdatedAt.UTC(),
	}
	if !m.LeaseExpiresAt.IsZero() {
		t := m.LeaseExpiresAt.UTC()
		j.LeaseExpiresAt = &t
	}
	return j
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// clip shortens s to n runes on one line for a table cell: control
// characters (a newline or a tab in an error or an ordering key) would
// break the table's rows and columns, so each becomes a space.
func clip(s string, n int) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
	if len([]rune(s)) <= n {
		return s
	}
	return string([]rune(s)[:n-1]) + "…"
}

func runList(ctx context.Context, args []string, std stdio) error {
	fs := newFlagSet("list", "list [flags]\n\nLists messages oldest first. A full page prints the --after value of the next one on stderr.", std.errOut)
	sf := addStoreFlags(fs)
	status := fs.String("status", "", "only this status: pending, claimed, delivered or dead_letter")
	lane := fs.String("lane", "", "only this lane")
	target := fs.String("target", "", "only this target")
	orderingKey := fs.String("ordering-key", "", "only the messages of this ordering key, in their order")
	limit := fs.Int("limit", 50, fmt.Sprintf("messages per page (at most %d)", outbox.MaxListLimit))
	after := fs.String("after", "", "list messages after this id (the next page)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected arguments %q", fs.Args())
	}
	if *limit < 1 || *limit > outbox.MaxListLimit {
		return usagef("--limit must be between 1 and %d, got %d", outbox.MaxListLimit, *limit)
	}
	if flagSet(fs, "ordering-key") && *orderingKey == "" {
		return usagef("--ordering-key: give a key (leave the flag out to list every message)")
	}
	filter := outbox.ListFilter{Status: outbox.Status(*status), Lane: *lane, Target: *target, OrderingKey: *orderingKey,
		Limit: *limit, AfterID: *after}
	if err := filter.Validate(); err != nil {
		return usageError{err}
	}
	msgs, err := call(ctx, sf, func(s *outbox.PostgresStore) ([]outbox.Message, error) { return s.List(ctx, filter) })
	if err != nil {
		return err
	}
	if len(msgs) == *limit {
		fmt.Fprintf(std.errOut, "more may follow: --after %s\n", msgs[len(msgs)-1].ID)
	}
	if *sf.json {
		out := make([]messageJSON, len(msgs))
		for i, m := range msgs {
			out[i] = toJSON(m)
		}
		return writeJSON(std.out, out)
	}
	return printList(std.out, msgs)
}

// printList prints messages as a table, one line each. Long lanes, targets
// and ordering keys are cut to 20 runes and errors to 50, so that a line
// fits a terminal; get and --json show them whole.
func printList(w io.Writer, msgs []outbox.Message) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATUS\tLANE\tTARGET\tORDERING KEY\tATTEMPTS\tAVAILABLE AT\tLAST ERROR")
	for _, m := range msgs {
		key := "-"
		if m.OrderingKey != "" {
			key = clip(m.OrderingKey, 20)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d/%d\t%s\t%s\n", m.ID, m.Status, clip(m.Lane, 20), clip(m.Target, 20), key,
			m.AttemptCount, m.MaxAttempts, m.AvailableAt.UTC().Format(time.RFC3339), clip(m.LastError, 50))
	}
	return tw.Flush()
}

// keyHoldText says whether a keyed dead letter still holds its ordering key
// and what that means for the key's later messages.
func keyHoldText(m outbox.Message) string {
	if m.HoldsOrderingKey() {
		return "yes: the key's later messages wait until it is redriven or the key is released (release-key)"
	}
	return "no: the key was released, its later messages go on"
}

func runGet(ctx context.Context, args []string, std stdio) error {
	fs := newFlagSet("get", "get [flags] ID\n\nShows one message, its payload pretty-printed.", std.errOut)
	sf := addStoreFlags(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usagef("want exactly one message id")
	}
	id := fs.Arg(0)
	if err := validate.ID("id", id); err != nil {
		return usageError{err}
	}
	m, err := call(ctx, sf, func(s *outbox.PostgresStore) (outbox.Message, error) { return s.Get(ctx, id) })
	if errors.Is(err, outbox.ErrNotFound) {
		return usagef("no message with id %q in this scope", id)
	}
	if err != nil {
		return err
	}
	if *sf.json {
		return writeJSON(std.out, toJSON(m))
	}
	tw := tabwriter.NewWriter(std.out, 0, 4, 2, ' ', 0)
	row := func(k, v string) { fmt.Fprintf(tw, "%s:\t%s\n", k, v) }
	row("id", m.ID)
	row("status", string(m.Status))
	row("lane / target", m.Lane+" / "+m.Target)
	if m.DedupeKey != "" {
		row("dedupe key", quoteIfNeeded(m.DedupeKey))
	}
	if m.OrderingKey != "" {
		row("ordering key", quoteIfNeeded(m.OrderingKey))
		if m.Status == outbox.StatusDeadLetter {
			row("holds key", keyHoldText(m))
		}
	}
	row("attempts", fmt.Sprintf("%d of %d", m.AttemptCount, m.MaxAttempts))
	row("available at", m.AvailableAt.UTC().Format(time.RFC3339Nano))
	if m.ClaimedBy != "" {
		row("claimed by", m.ClaimedBy)
		row("lease expires", m.LeaseExpiresAt.UTC().Format(time.RFC3339Nano))
	}
	if m.LastError != "" {
		row("last error", m.LastError)
	}
	row("created / updated", m.CreatedAt.UTC().Format(time.RFC3339)+" / "+m.UpdatedAt.UTC().Format(time.RFC3339))
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(m.Headers) > 0 {
		fmt.Fprintln(std.out, "headers:")
		for _, name := range slices.Sorted(maps.Keys(m.Headers)) {
			fmt.Fprintf(std.out, "  %s: %s\n", quoteIfNeeded(name), quoteIfNeeded(m.Headers[name]))
		}
	}
	var pretty strings.Builder
	enc := json.NewEncoder(&pretty)
	enc.SetIndent("", "  ")
	if err := enc.Encode(m.Payload); err != nil {
		return err
	}
	fmt.Fprintf(std.out, "payload:\n%s", pretty.String())
	return nil
}

// quoteIfNeeded returns s as is when it reads unambiguously on a line of
// its own, and Go-quoted otherwise (control characters, leading or trailing
// spaces, or nothing at all), so that an operator can copy a key exactly.
func quoteIfNeeded(s string) string {
	if s == "" || strings.TrimSpace(s) != s || strings.IndexFunc(s, func(r rune) bool { return !unicode.IsPrint(r) && r != ' ' }) >= 0 {
		return strconv.Quote(s)
	}
	return s
}

func runStats(ctx context.Context, args []string, std stdio) error {
	fs := newFlagSet("stats", "stats [flags]\n\nCounts and ages per lane and target, read from the partial indexes of pending,\nclaimed and dead messages (cheap on any table size). --delivered also counts\ndelivered messages, which reads the whole table.", std.errOut)
	sf := addStoreFlags(fs)
	delivered := fs.Bool("delivered", false, "also count delivered messages (reads the whole table)")
	watch := fs.Duration("watch", 0, "refresh every interval (e.g. 2s) until interrupted")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected arguments %q", fs.Args())
	}
	if *watch < 0 || (*watch > 0 && *watch < 100*time.Millisecond) {
		return usagef("--watch must be at least 100ms, got %s", *watch)
	}
	pool, store, err := sf.open(ctx)
	if err != nil {
		return err
	}
	defer pool.Close()
	for {
		stats, err := store.Stats(ctx, *delivered)
		if err != nil {
			if ctx.Err() != nil && *watch > 0 {
				return nil
			}
			return err
		}
		if *sf.json {
			if err := writeJSON(std.out, statsJSON(stats)); err != nil {
				return err
			}
		} else if err := printStats(std.out, stats, *watch > 0); err != nil {
			return err
		}
		if *watch == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(*watch):
		}
	}
}

type statJSON struct {
	Lane           string  `json:"lane"`
	Target         string  `json:"target"`
	Pending        int64   `json:"pending"`
	Due            int64   `json:"due"`
	Claimed        int64   `json:"claimed"`
	ExpiredLeases  int64   `json:"expired_leases"`
	DeadLetters    int64   `json:"dead_letters"`
	Delivered      *int64  `json:"delivered,omitempty"`
	OldestDueAgeMs float64 `json:"oldest_due_age_ms"`
}

func statsJSON(stats []outbox.Stats) []statJSON {
	out := make([]statJSON, len(stats))
	for i, s := range stats {
		out[i] = statJSON{Lane: s.Lane, Target: s.Target, Pending: s.Pending, Due: s.Due, Claimed: s.Claimed,
			ExpiredLeases: s.ExpiredLeases, DeadLetters: s.DeadLetters, OldestDueAgeMs: float64(s.OldestDueAge) / 1e6}
		if s.Delivered >= 0 {
			d := s.Delivered
			out[i].Delivered = &d
		}
	}
	return out
}

func printStats(w io.Writer, stats []outbox.Stats, stamped bool) error {
	if stamped {
		fmt.Fprintf(w, "\n%s\n", time.Now().UTC().Format(time.RFC3339))
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "LANE\tTARGET\tPENDING\tDUE\tOLDEST DUE\tCLAIMED\tEXPIRED LEASES\tDEAD\tDELIVERED\t")
	for _, s := range stats {
		delivered := "-"
		if s.Delivered >= 0 {
			delivered = fmt.Sprint(s.Delivered)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%d\t%d\t%d\t%s\t\n", clip(s.Lane, 24), clip(s.Target, 24), s.Pending, s.Due,
			s.OldestDueAge.Round(time.Millisecond), s.Claimed, s.ExpiredLeases, s.DeadLetters, delivered)
	}
	if len(stats) == 0 {
		fmt.Fprintln(tw, "(no messages)\t\t\t\t\t\t\t\t\t")
	}
	return tw.Flush()
}

func runRedrive(ctx context.Context, args []string, std stdio) error {
	fs := newFlagSet("redrive", "redrive [flags] [ID...]\n\nSends dead letters back to pending with fresh attempts: the ids given, or every\ndead letter of --lane and --target (optionally only those whose last error\ncontains --error-contains). Messages that are not dead letters are left alone.", std.errOut)
	sf := addStoreFlags(fs)
	lane := fs.String("lane", "", "redrive the dead letters of this lane (with --target)")
	target := fs.String("target", "", "redrive the dead letters of this target (with --lane)")
	contains := fs.String("error-contains", "", "only dead letters whose last error contains this text")
	if err := parse(fs, args); err != nil {
		return err
	}
	req := outbox.RedriveRequest{IDs: fs.Args(), Lane: *lane, Target: *target, ErrorContains: *contains}
	if err := req.Validate(); err != nil {
		return usageError{err}
	}
	res, err := call(ctx, sf, func(s *outbox.PostgresStore) (outbox.RedriveResult, error) { return s.Redrive(ctx, req) })
	if err != nil {
		return err
	}
	if *sf.json {
		return writeJSON(std.out, map[string]any{"redriven": res.Redriven, "not_dead": nonNil(res.NotDead)})
	}
	fmt.Fprintf(std.out, "redrove %d dead letters\n", res.Redriven)
	if len(res.NotDead) > 0 {
		fmt.Fprintf(std.out, "not dead letters, left alone: %s\n", strings.Join(res.NotDead, " "))
	}
	return nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func runPurge(ctx context.Context, args []string, std stdio) error {
	fs := newFlagSet("purge", "purge --older-than DURATION [flags]\n\nDeletes delivered messages (and dead letters with --dead-letters) that finished\nmore than DURATION ago, in batches, reporting progress on stderr. Interrupted,\nit stops between batches and reports what it deleted. Deleting a message frees\nits dedupe key.", std.errOut)
	sf := addStoreFlags(fs)
	olderThan := fs.Duration("older-than", 0, "age of the messages to delete, e.g. 72h (required)")
	dead := fs.Bool("dead-letters", false, "delete dead letters too")
	dryRun := fs.Bool("dry-run", false, "count what would be deleted, delete nothing")
	batch := fs.Int("batch-size", 1000, fmt.Sprintf("rows per statement (at most %d)", outbox.MaxBatch))
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected arguments %q", fs.Args())
	}
	if !flagSet(fs, "older-than") {
		return usagef("--older-than is required (e.g. --older-than 72h)")
	}
	req := outbox.PurgeRequest{OlderThan: *olderThan, DeadLetters: *dead, BatchSize: *batch}
	if err := req.Validate(); err != nil {
		return usageError{err}
	}
	pool, store, err := sf.open(ctx)
	if err != nil {
		return err
	}
	defer pool.Close()
	what := "delivered messages"
	if *dead {
		what = "delivered messages and dead letters"
	}
	if *dryRun {
		n, err := store.PurgeCount(ctx, req)
		if err != nil {
			return err
		}
		if *sf.json {
			return writeJSON(std.out, map[string]any{"would_delete": n, "dry_run": true})
		}
		fmt.Fprintf(std.out, "would delete %d %s older than %s (dry run)\n", n, what, *olderThan)
		return nil
	}
	start, lastReport := time.Now(), time.Now()
	req.Progress = func(deleted int64) {
		if time.Since(lastReport) >= time.Second {
			fmt.Fprintf(std.errOut, "purge: %d deleted (%.0fs)\n", deleted, time.Since(start).Seconds())
			lastReport = time.Now()
		}
	}
	n, err := store.Purge(ctx, req)
	if err != nil {
		fmt.Fprintf(std.out, "deleted %d %s before stopping\n", n, what)
		return err
	}
	if *sf.json {
		return writeJSON(std.out, map[string]any{"deleted": n})
	}
	fmt.Fprintf(std.out, "deleted %d %s older than %s in %s\n", n, what, *olderThan, time.Since(start).Round(time.Millisecond))
	return nil
}

func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

func runEnqueue(ctx context.Context, args []string, std stdio) error {
	fs := newFlagSet("enqueue", "enqueue --lane LANE --target TARGET [flags] < payload.json\n\nEnqueues one message. The payload comes from --payload or standard input.", std.errOut)
	sf := addStoreFlags(fs)
	lane := fs.String("lane", "", "lane (required)")
	target := fs.String("target", "", "target (required)")
	payload := fs.String("payload", "", "JSON payload (default: read standard input)")
	key := fs.String("dedupe-key", "", "dedupe key: enqueueing the same draft again is a no-op")
	orderingKey := fs.String("ordering-key", "", "ordering key: the key's messages are delivered one at a time, in enqueue order")
	hdrs := headerFlag{}
	fs.Var(hdrs, "header", "a header NAME=VALUE for the consumer (repeat for more)")
	availableAt := fs.String("available-at", "", "RFC 3339 time before which the message is not delivered")
	maxAttempts := fs.Int("max-attempts", 0, fmt.Sprintf("deliveries before dead-lettering (default %d)", outbox.DefaultMaxAttempts))
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected arguments %q", fs.Args())
	}
	body := []byte(*payload)
	if !flagSet(fs, "payload") {
		b, err := io.ReadAll(io.LimitReader(std.in, outbox.MaxPayloadBytes+1))
		if err != nil {
			return usagef("reading the payload from standard input: %v", err)
		}
		body = []byte(strings.TrimSpace(string(b)))
	}
	if flagSet(fs, "ordering-key") && *orderingKey == "" {
		return usagef("--ordering-key: give a key (leave the flag out for an unordered message)")
	}
	d := outbox.Draft{Lane: *lane, Target: *target, Payload: body, DedupeKey: *key, OrderingKey: *orderingKey,
		MaxAttempts: *maxAttempts}
	if len(hdrs) > 0 {
		d.Headers = hdrs
	}
	if *availableAt != "" {
		t, err := time.Parse(time.RFC3339Nano, *availableAt)
		if err != nil {
			return usagef("--available-at: want an RFC 3339 time like 2030-01-02T15:04:05Z, got %q", *availableAt)
		}
		d.AvailableAt = t
	}
	if err := d.Validate(); err != nil {
		return usageError{err}
	}
	res, err := call(ctx, sf, func(s *outbox.PostgresStore) (outbox.EnqueueResult, error) { return s.Enqueue(ctx, d) })
	if err != nil {
		return err
	}
	if *sf.json {
		return writeJSON(std.out, map[string]any{"message": toJSON(res.Message), "deduplicated": res.Deduplicated})
	}
	if res.Deduplicated {
		fmt.Fprintf(std.out, "deduplicated: message %s already holds dedupe key %q\n", res.Message.ID, d.DedupeKey)
		return nil
	}
	fmt.Fprintf(std.out, "enqueued message %s\n", res.Message.ID)
	return nil
}

// headerFlag collects repeated --header NAME=VALUE flags. The name ends at
// the first '=' (values may hold more). A malformed flag is a usage error
// naming it, reported by the flag package before anything is written; the
// rest of a header's rules (no blank name, valid UTF-8, the total size) are
// Draft.Validate's.
type headerFlag map[string]string

func (h headerFlag) String() string {
	var parts []string
	for _, name := range slices.Sorted(maps.Keys(h)) {
		parts = append(parts, name+"="+h[name])
	}
	return strings.Join(parts, ",")
}

func (h headerFlag) Set(v string) error {
	name, value, ok := strings.Cut(v, "=")
	switch {
	case !ok:
		return fmt.Errorf("want NAME=VALUE, got %q (no '=')", v)
	case name == "":
		return fmt.Errorf("want NAME=VALUE, got %q (no name)", v)
	}
	if prev, dup := h[name]; dup && prev != value {
		return fmt.Errorf("header %q given twice with different values (%q and %q)", name, prev, value)
	}
	h[name] = value
	return nil
}

func runReleaseKey(ctx context.Context, args []string, std stdio) error {
	fs := newFlagSet("release-key", "release-key --lane LANE --target TARGET [flags] KEY\n\n"+
		"Releases an ordering key held by a dead letter. A key's messages are delivered\n"+
		"one at a time, so a dead-lettered head holds its key and every later message of\n"+
		"the key waits behind it. Releasing the key lets the next message be delivered;\n"+
		"the dead letter stays a dead letter (redrive sends it back to its place in the\n"+
		"key). A key no dead letter holds is left alone and reported.", std.errOut)
	sf := addStoreFlags(fs)
	lane := fs.String("lane", "", "lane of the key (required)")
	target := fs.String("target", "", "target of the key (required)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usagef("want exactly one ordering key after the flags, got %d arguments", fs.NArg())
	}
	key := fs.Arg(0)
	if err := validate.ReleaseKey(*lane, *target, key); err != nil {
		return usageError{err}
	}
	pool, store, err := sf.open(ctx)
	if err != nil {
		return err
	}
	defer pool.Close()
	n, err := store.ReleaseOrderingKey(ctx, *lane, *target, key)
	if err != nil {
		return asUsage(err)
	}
	// The key's next message, now its head: the oldest pending one.
	var next string
	if n > 0 {
		waiting, err := store.List(ctx, outbox.ListFilter{Status: outbox.StatusPending, Lane: *lane, Target: *target, OrderingKey: key, Limit: 1})
		if err != nil {
			return fmt.Errorf("released %d dead letters of ordering key %s, then: %w", n, quoteIfNeeded(key), err)
		}
		if len(waiting) > 0 {
			next = waiting[0].ID
		}
	}
	if *sf.json {
		out := map[string]any{"released": n, "lane": *lane, "target": *target, "ordering_key": key}
		if next != "" {
			out["next"] = next
		}
		return writeJSON(std.out, out)
	}
	switch {
	case n == 0:
		fmt.Fprintf(std.out, "no dead letter holds ordering key %s of %s / %s: nothing released\n", quoteIfNeeded(key), *lane, *target)
	case next != "":
		fmt.Fprintf(std.out, "released %d dead letter%s of ordering key %s; its next message, %s, is now the head\n", n, plural(n), quoteIfNeeded(key), next)
	default:
		fmt.Fprintf(std.out, "released %d dead letter%s of ordering key %s; no message of the key waits, the next one enqueued is delivered\n", n, plural(n), quoteIfNeeded(key))
	}
	return nil
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}
