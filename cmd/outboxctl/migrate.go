package main

import (
	"context"
	"fmt"
	"strconv"
	"text/tabwriter"

	"github.com/pgoutbox/pgoutbox/outbox"
)

func runMigrate(ctx context.Context, args []string, std stdio) error {
	stdout, stderr := std.out, std.errOut
	fs := newFlagSet("migrate", "migrate [flags] up|up-to VERSION|down|status|version\n\n"+
		"  up       apply every pending migration (what outbox.Migrate does)\n"+
		"  up-to N  apply the pending migrations up to version N (a rolling deploy)\n"+
		"  down     roll back the most recent migration\n"+
		"  status   list migrations and whether each is applied\n"+
		"  version  print the current schema version", stderr)
	url := databaseURLFlag(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() < 1 {
		fs.Usage()
		return usagef("want one of up, up-to, down, status, version")
	}
	action := fs.Arg(0)
	var target int64
	switch action {
	case "up", "down", "status", "version":
		if fs.NArg() != 1 {
			return usagef("%s takes no arguments", action)
		}
	case "up-to":
		v, err := strconv.ParseInt(fs.Arg(1), 10, 64)
		if fs.NArg() != 2 || err != nil || v < 1 {
			return usagef("up-to takes one version, a positive integer (got %q)", fs.Args()[1:])
		}
		target = v
	default:
		return usagef("unknown action %q: want up, up-to, down, status or version", action)
	}
	pool, err := connect(ctx, *url)
	if err != nil {
		return err
	}
	defer pool.Close()
	db := sqlDB(pool)
	defer db.Close()
	p, err := outbox.NewMigrationProvider(db)
	if err != nil {
		return err
	}
	switch action {
	case "up", "up-to":
		results, err := outbox.Up(ctx, p, target)
		if err != nil {
			return err
		}
		if len(results) == 0 {
			fmt.Fprintln(stdout, "schema is up to date")
		}
		for _, r := range results {
			fmt.Fprintf(stdout, "applied %s (%s)\n", r.Source.Path, r.Duration.Round(1e6))
		}
	case "down":
		r, err := p.Down(ctx)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "rolled back %s\n", r.Source.Path)
	case "status":
		st, err := p.Status(ctx)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "VERSION\tSTATE\tAPPLIED AT\tFILE")
		for _, s := range st {
			applied := "-"
			if !s.AppliedAt.IsZero() {
				applied = s.AppliedAt.Format("2006-01-02 15:04:05Z07:00")
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\n", s.Source.Version, s.State, applied, s.Source.Path)
		}
		return tw.Flush()
	case "version":
		v, err := p.GetDBVersion(ctx)
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, strconv.FormatInt(v, 10))
	}
	return nil
}
