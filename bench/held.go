package main

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/pgoutbox/pgoutbox/internal/benchkit"
	"github.com/pgoutbox/pgoutbox/relay"
)

const (
	variantNotHeld = "no snapshot held"
	variantHeld    = "REPEATABLE READ snapshot held throughout"
)

// heldSnapshot is the continuous run while another session holds a
// REPEATABLE READ snapshot open for the whole run (a long report, a stuck
// replica's hot_standby_feedback, an idle-in-transaction session), beside
// the same run without it, one after the other: nothing that dies during the
// run can be vacuumed away, so every dead row version and index entry stays
// in the claim's path. It reports each system's table's dead tuples and
// sizes before and after.
func (b *bencher) heldSnapshot() error {
	systems := []struct {
		name, table string
		run         func() (sample, error)
	}{
		{sysPgoutbox, table, func() (sample, error) { return b.continuousPgoutbox(relay.ModeClaim, false) }},
		{sysLock, table, func() (sample, error) { return b.continuousPgoutbox(relay.ModeLock, false) }},
		{sysRiver, "river_job", b.riverContinuous},
	}
	for run := range b.o.runs {
		for _, sys := range systems {
			if !b.wants(sys.name) {
				continue
			}
			for _, held := range []bool{false, true} {
				if err := b.reset(); err != nil {
					return err
				}
				before, err := b.h.Table(b.ctx, sys.table)
				if err != nil {
					return err
				}
				release := func() error { return nil }
				if held {
					if release, err = b.holdSnapshot(); err != nil {
						return err
					}
				}
				s, err := sys.run()
				if err != nil {
					_ = release()
					return err
				}
				after, err := b.h.Table(b.ctx, sys.table) // the snapshot still held
				if rerr := release(); err == nil {
					err = rerr
				}
				if err != nil {
					return err
				}
				s.tableBefore, s.tableAfter = &before, &after
				variant := variantNotHeld
				if held {
					variant = variantHeld
				}
				b.r.add(scHeld, variant, sys.name, s)
				fmt.Fprintf(b.log, "  held-snapshot run %d, %s, %s: %.0f/s, dead tuples %d, table %s, indexes %s\n",
					run+1, sys.name, variant, s.rate, after.DeadTuples, benchkit.MiB(after.TableBytes), benchkit.MiB(after.IndexBytes))
			}
		}
	}
	return nil
}

// holdSnapshot opens a session of its own (not the harness's, whose sessions
// a window waits to close) and holds a REPEATABLE READ snapshot in it until
// release is called.
func (b *bencher) holdSnapshot() (release func() error, err error) {
	cfg, err := pgx.ParseConfig(b.url)
	if err != nil {
		return nil, err
	}
	cfg.RuntimeParams["application_name"] = b.h.SessionName() + "-snapshot"
	conn, err := pgx.ConnectConfig(b.ctx, cfg)
	if err != nil {
		return nil, err
	}
	tx, err := conn.BeginTx(b.ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead})
	if err != nil {
		_ = conn.Close(b.ctx)
		return nil, err
	}
	if _, err := benchkit.QueryOne[struct {
		One int `db:"one"`
	}](b.ctx, b.sql, tx, "hold_snapshot", nil); err != nil {
		_ = conn.Close(b.ctx)
		return nil, err
	}
	return func() error {
		ctx := context.WithoutCancel(b.ctx)
		err := tx.Rollback(ctx)
		if cerr := conn.Close(ctx); err == nil {
			err = cerr
		}
		return err
	}, nil
}
