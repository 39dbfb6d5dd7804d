// Package tools pins the developer tools of pgoutbox (sqlc, goose, golangci-lint)
// in a module of their own, so that importers of the library never inherit them.
// Run them with `go tool -modfile=tools/go.mod <name>`.
package tools
