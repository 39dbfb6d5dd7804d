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
	fs := newFlagSet("migrate", "migrate [flags] up|down|status|version\n\n"+
		"  up       apply every pending migration (what outbox.Migrate does)\n"+
		"  down     roll back the most recent migration\n"+
		"  status   list migrations and whether each is applied\n"+
		"  version  print the current schema version", stderr)
	url := databaseURLFlag(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return usagef("want exactly one of up, down, status, version")
	}
	action := fs.Arg(0)
	switch action {
	case "up", "down", "status", "version":
	default:
		return usagef("unknown action %q: want up, down, status or version", action)
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
	case "up":
		results, err := p.Up(ctx)
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
