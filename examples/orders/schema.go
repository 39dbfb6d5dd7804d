// Package orders is the data layer of the demo service that pgoutbox's
// examples and the demo (examples/demo) use: a table of its own and sqlc-generated
// accessors, the way a service using pgoutbox already has them. Its Querier
// shares a transaction with the outbox store.
package orders

import (
	"context"
	_ "embed" // schema.sql
	"fmt"
)

//go:embed schema.sql
var schema string

// CreateSchema creates the orders table if it does not exist.
func CreateSchema(ctx context.Context, db DBTX) error {
	if _, err := db.Exec(ctx, schema); err != nil {
		return fmt.Errorf("orders: create schema: %w", err)
	}
	return nil
}
