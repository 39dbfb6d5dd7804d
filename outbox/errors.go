package outbox

import (
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgconn"
)

// ValidationError names the input that was refused and why. It wraps
// ErrValidation.
type ValidationError struct {
	// Field is the input's name as callers know it: "lane", "payload",
	// "limit", "scope", ...
	Field string
	// Reason says what is wrong with it.
	Reason string
}

func (e *ValidationError) Error() string {
	return "invalid " + e.Field + ": " + e.Reason
}

// Unwrap makes errors.Is(err, ErrValidation) hold.
func (e *ValidationError) Unwrap() error { return ErrValidation }

func invalid(field, format string, args ...any) *ValidationError {
	return &ValidationError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// ConflictError reports a dedupe key already held by a different draft. It
// wraps ErrConflict.
type ConflictError struct {
	// DedupeKey is the contested key.
	DedupeKey string
	// Field names the first part of the draft that differs from the stored
	// message: "payload", "max_attempts" or "available_at".
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
	return pgErr.Code == "40P01" /* deadlock_detected */ || pgErr.Code == "40001" /* serialization_failure */
}
