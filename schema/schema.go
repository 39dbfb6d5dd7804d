// Package schema holds pgoutbox's goose migrations. The SQL files are the
// source of truth for the database and for sqlc, which reads them as the
// schema; this package embeds them so that outbox.Migrate needs no files at
// run time.
//
// The same files work with the goose CLI:
//
//	goose -dir schema -table pgoutbox_goose_version postgres "$DATABASE_URL" up
package schema

import (
	"embed"
	"io/fs"
)

//go:embed *.sql
var files embed.FS

// Migrations returns the migration files, named the way goose expects
// (00001_name.sql with -- +goose Up and Down sections).
func Migrations() fs.FS {
	return files
}
