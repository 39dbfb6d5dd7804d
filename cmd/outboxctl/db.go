package main

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
)

// connect parses url and opens a pool, checking that the server answers. A
// URL that does not parse and a server that does not answer are usage
// errors (exit 2). Errors name the host, never the password.
func connect(ctx context.Context, url string) (*pgxpool.Pool, error) {
	if url == "" {
		return nil, usagef("no database: pass --database-url or set DATABASE_URL")
	}
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, usagef("cannot parse the database URL: %v", err)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, usagef("cannot connect to %s: %v", where(cfg.ConnConfig), err)
	}
	pingCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := pool.Ping(pingCtx); err != nil {
		pool.Close()
		// An unreachable server is bad input to a CLI: nothing was touched.
		return nil, usagef("cannot connect to %s: %v", where(cfg.ConnConfig), err)
	}
	return pool, nil
}

// sqlDB is a database/sql handle on the pool, for goose. Closing it leaves
// the pool open.
func sqlDB(pool *pgxpool.Pool) *sql.DB {
	return stdlib.OpenDBFromPool(pool)
}

func where(c *pgx.ConnConfig) string {
	return fmt.Sprintf("%s:%d/%s as %s", c.Host, c.Port, c.Database, c.User)
}
