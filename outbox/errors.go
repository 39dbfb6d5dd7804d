package outbox

import (
	"errors"
	"fmt"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgoutbox/pgoutbox/internal/validate"
)

// ValidationError names the input that was refused and why: Field is the
// input's name as callers know it ("lane", "payload", "limit", "scope",
// "receipts[3].id", ...) and Reason says what is wrong with it. It wraps
// ErrValidation. Every store in this module (PostgresStore, memstore.Store)
// refuses inputs with this type, by the same rules.
type ValidationError = validate.Error

func invalid(field, format string, args ...any) *ValidationError {
	return validate.Invalid(field, format, args...)
}

// ConflictError reports a dedupe key already held by a different draft. It
// wraps ErrConflict.
type ConflictError struct {
	// DedupeKey is the contested key.
	DedupeKey string
	// Field names the first part of the draft that differs from the stored
	// message: "payload", "max_attempts", "available_at", "ordering_key" or
	// "headers". Only what the producer set counts: a nack or redrive moves
	// a message's available_at, but the same draft, AvailableAt included,
	// still deduplicates afterwards.
	Field string
	// Existing is the message that holds the key.
	Existing Message
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("dedupe key %q is held by message %s with a different %s", e.DedupeKey, e.Existing.ID, e.Field)
}

// Unwrap makes errors.Is(err, ErrConflict) hold.
func (e *ConflictError) Unwrap() error { return ErrConflict }

// maxClaimRetries bounds how often a claim statement the server aborted as a
// deadlock or serialization failure is run again.
const maxClaimRetries = 3

// retryable reports whether err is the server aborting a statement that can
// simply be run again: a deadlock or a serialization failure.
func retryable(err error) bool {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return false
	}
	return pgErr.Code == pgerrcode.DeadlockDetected || pgErr.Code == pgerrcode.SerializationFailure
}

// explainSerialization says what a serialization failure of a deduplicated
// insert means. In a REPEATABLE READ or SERIALIZABLE transaction, a dedupe
// key taken by a transaction that committed after this one's snapshot is a
// conflict Postgres cannot resolve in place (ON CONFLICT cannot return a row
// the snapshot cannot see): it aborts the transaction with SQLSTATE 40001,
// which such callers retry anyway. The error stays a *pgconn.PgError
// underneath, so retry loops that look for 40001 keep working.
func explainSerialization(key string, err error) error {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != pgerrcode.SerializationFailure {
		return err
	}
	return fmt.Errorf("dedupe key %q was taken by a transaction that committed after this REPEATABLE READ or SERIALIZABLE transaction began; retry the transaction: %w", key, err)
}
