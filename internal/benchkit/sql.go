package benchkit

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// The harness's own SQL, one file per statement (or per script), kept out of
// the library's generated package: it reads server statistics that only a
// benchmark needs.
//
//go:embed sql/*.sql
var harnessFS embed.FS

// Conn is what SQL runs on: a pool, a connection or a transaction.
type Conn interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// SQL is a directory of .sql files, each a statement or a script of several.
// A script's statements each end with a semicolon at the end of a line, and
// run one at a time (VACUUM and CHECKPOINT refuse to run in the implicit
// transaction of a multi-statement query). Parameters are named (@name) and
// passed as pgx.NamedArgs.
type SQL struct {
	fsys fs.FS
}

// NewSQL returns the files of fsys (for example an embed.FS) as SQL. Files
// are named without their .sql suffix.
func NewSQL(fsys fs.FS) SQL { return SQL{fsys: fsys} }

func harnessSQL() SQL {
	sub, err := fs.Sub(harnessFS, "sql")
	if err != nil {
		panic(err) // the directory is embedded at build time
	}
	return NewSQL(sub)
}

// Statements returns the statements of file name.sql.
func (s SQL) Statements(name string) ([]string, error) {
	b, err := fs.ReadFile(s.fsys, name+".sql")
	if err != nil {
		return nil, fmt.Errorf("sql %s: %w", name, err)
	}
	var (
		out []string
		cur strings.Builder
	)
	for line := range strings.SplitSeq(string(b), "\n") {
		trimmed := strings.TrimSpace(line)
		if cur.Len() == 0 && (trimmed == "" || strings.HasPrefix(trimmed, "--")) {
			continue
		}
		cur.WriteString(line)
		cur.WriteByte('\n')
		if strings.HasSuffix(trimmed, ";") {
			out = append(out, strings.TrimSpace(cur.String()))
			cur.Reset()
		}
	}
	if strings.TrimSpace(cur.String()) != "" {
		return nil, fmt.Errorf("sql %s: the last statement does not end with a semicolon", name)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("sql %s: no statement", name)
	}
	return out, nil
}

// Exec runs every statement of file name, in order, with args.
func (s SQL) Exec(ctx context.Context, c Conn, name string, args pgx.NamedArgs) error {
	stmts, err := s.Statements(name)
	if err != nil {
		return err
	}
	for _, st := range stmts {
		var err error
		if len(args) == 0 {
			_, err = c.Exec(ctx, st)
		} else {
			_, err = c.Exec(ctx, st, args)
		}
		if err != nil {
			return fmt.Errorf("sql %s: %w", name, err)
		}
	}
	return nil
}

// Query runs file name, which must hold one statement, and collects its rows
// into T by column name (pgx.RowToStructByName: fields match columns by
// their db tag or name).
func Query[T any](ctx context.Context, s SQL, c Conn, name string, args pgx.NamedArgs) ([]T, error) {
	stmts, err := s.Statements(name)
	if err != nil {
		return nil, err
	}
	if len(stmts) != 1 {
		return nil, fmt.Errorf("sql %s: %d statements, want one to query", name, len(stmts))
	}
	var rows pgx.Rows
	if len(args) == 0 {
		rows, err = c.Query(ctx, stmts[0])
	} else {
		rows, err = c.Query(ctx, stmts[0], args)
	}
	if err != nil {
		return nil, fmt.Errorf("sql %s: %w", name, err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowToStructByName[T])
	if err != nil {
		return nil, fmt.Errorf("sql %s: %w", name, err)
	}
	return out, nil
}

// QueryOne is Query for a statement that returns exactly one row.
func QueryOne[T any](ctx context.Context, s SQL, c Conn, name string, args pgx.NamedArgs) (T, error) {
	var zero T
	rows, err := Query[T](ctx, s, c, name, args)
	if err != nil {
		return zero, err
	}
	if len(rows) != 1 {
		return zero, fmt.Errorf("sql %s: %d rows, want one", name, len(rows))
	}
	return rows[0], nil
}

// Text returns the one statement of file name, for callers that run it
// often with positional parameters (a baseline's loop should not pay for
// reading the file or rewriting named parameters).
func (s SQL) Text(name string) (string, error) {
	stmts, err := s.Statements(name)
	if err != nil {
		return "", err
	}
	if len(stmts) != 1 {
		return "", fmt.Errorf("sql %s: %d statements, want one", name, len(stmts))
	}
	return stmts[0], nil
}
