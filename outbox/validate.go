package outbox

import (
	"fmt"

	"github.com/pgoutbox/pgoutbox/internal/msgid"
	"github.com/pgoutbox/pgoutbox/internal/validate"
)

// The rules themselves live in internal/validate, shared with memstore; this
// file applies them to the outbox's request types.

// Validate reports whether d can be enqueued as is. The error wraps
// ErrValidation and, through *ValidationError, names the field.
func (d Draft) Validate() error {
	if err := d.validate(); err != nil {
		return fmt.Errorf("outbox: draft: %w", err)
	}
	return nil
}

func (d Draft) validate() *ValidationError {
	if err := validate.Name("lane", d.Lane, MaxLaneBytes); err != nil {
		return err
	}
	if err := validate.Name("target", d.Target, MaxTargetBytes); err != nil {
		return err
	}
	if d.DedupeKey != "" {
		if err := validate.Text("dedupe_key", d.DedupeKey, MaxDedupeKeyBytes); err != nil {
			return err
		}
	}
	if d.OrderingKey != "" {
		if err := validate.Text("ordering_key", d.OrderingKey, MaxOrderingKeyBytes); err != nil {
			return err
		}
	}
	if err := validate.Headers(d.Headers); err != nil {
		return err
	}
	if d.MaxAttempts < 0 {
		return invalid("max_attempts", "must not be negative (0 means the default, %d), got %d", DefaultMaxAttempts, d.MaxAttempts)
	}
	if d.MaxAttempts > validate.MaxInt32 {
		return invalid("max_attempts", "must be at most %d, got %d", validate.MaxInt32, d.MaxAttempts)
	}
	if !d.AvailableAt.IsZero() {
		if err := validate.Time("available_at", d.AvailableAt); err != nil {
			return err
		}
	}
	return validate.Payload(d.Payload)
}

// maxAttempts resolves the zero value to the default.
func (d Draft) maxAttempts() int32 {
	if d.MaxAttempts == 0 {
		return DefaultMaxAttempts
	}
	return int32(d.MaxAttempts) //nolint:gosec // validate bounds it by MaxInt32
}

// Validate reports whether r is a claim request Claim accepts. The error
// wraps ErrValidation and names the field.
func (r ClaimRequest) Validate() error {
	if err := r.validate(); err != nil {
		return fmt.Errorf("outbox: claim request: %w", err)
	}
	return nil
}

func (r ClaimRequest) validate() *ValidationError {
	if err := validate.Name("lane", r.Lane, MaxLaneBytes); err != nil {
		return err
	}
	if err := validate.Name("target", r.Target, MaxTargetBytes); err != nil {
		return err
	}
	if err := validate.Name("consumer_id", r.ConsumerID, MaxConsumerIDBytes); err != nil {
		return err
	}
	if r.Limit < 1 || r.Limit > MaxClaimLimit {
		return invalid("limit", "must be between 1 and %d, got %d", MaxClaimLimit, r.Limit)
	}
	return validate.Lease(r.Lease)
}

// ValidateScope reports whether s can name a scope (see Scoped): not blank,
// at most MaxScopeBytes of UTF-8, no control characters. It is exported for
// services that take tenant ids from outside and want to refuse a bad one
// before opening a transaction.
func ValidateScope(s string) error { return validate.AsError(validate.Scope(s)) }

// Validate reports whether f is a filter List accepts.
func (f ListFilter) Validate() error { return validate.AsError(f.check()) }

func (f ListFilter) check() *ValidationError {
	if f.Status != "" && !f.Status.Valid() {
		return invalid("status", "must be one of pending, claimed, delivered, dead_letter (or empty for all), got %q", f.Status)
	}
	if f.Lane != "" {
		if err := validate.Name("lane", f.Lane, MaxLaneBytes); err != nil {
			return err
		}
	}
	if f.Target != "" {
		if err := validate.Name("target", f.Target, MaxTargetBytes); err != nil {
			return err
		}
	}
	if f.OrderingKey != "" {
		if err := validate.Text("ordering_key", f.OrderingKey, MaxOrderingKeyBytes); err != nil {
			return err
		}
	}
	if f.AfterID != "" {
		if _, ok := msgid.Parse(f.AfterID); !ok {
			return invalid("after_id", "%q is not a message id", f.AfterID)
		}
	}
	if f.DedupeKey != "" {
		if err := validate.Text("dedupe_key", f.DedupeKey, MaxDedupeKeyBytes); err != nil {
			return err
		}
	}
	if f.ErrorContains != "" {
		if err := validate.Text("error_contains", f.ErrorContains, MaxErrorBytes); err != nil {
			return err
		}
	}
	_, err := validate.ListLimit(f.Limit)
	return err
}

// Validate reports whether r is a redrive request Redrive accepts.
func (r RedriveRequest) Validate() error { return validate.AsError(r.check()) }

func (r RedriveRequest) check() *ValidationError {
	byIDs := len(r.IDs) > 0
	byKey := r.Lane != "" || r.Target != "" || r.ErrorContains != ""
	switch {
	case byIDs && byKey:
		return invalid("ids", "give ids, or a lane and target, not both")
	case !byIDs && !byKey:
		return invalid("ids", "give ids, or a lane and target")
	case byIDs:
		if err := validate.BatchSize("ids", len(r.IDs)); err != nil {
			return err
		}
		for i, id := range r.IDs {
			if err := validate.ID(fmt.Sprintf("ids[%d]", i), id); err != nil {
				return err
			}
		}
		return nil
	}
	if err := validate.Name("lane", r.Lane, MaxLaneBytes); err != nil {
		return err
	}
	if err := validate.Name("target", r.Target, MaxTargetBytes); err != nil {
		return err
	}
	if r.ErrorContains != "" {
		return validate.Text("error_contains", r.ErrorContains, MaxErrorBytes)
	}
	return nil
}

// Validate reports whether r is a purge request Purge accepts.
func (r PurgeRequest) Validate() error { return validate.AsError(r.check()) }

func (r PurgeRequest) check() *ValidationError {
	if r.OlderThan < 0 {
		return invalid("older_than", "must not be negative, got %s", r.OlderThan)
	}
	if r.BatchSize < 0 || r.BatchSize > MaxBatch {
		return invalid("batch_size", "must be between 1 and %d (0 for the default), got %d", MaxBatch, r.BatchSize)
	}
	return nil
}
