package dashboard

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"
	"unicode"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pgoutbox/pgoutbox/db"
	"github.com/pgoutbox/pgoutbox/outbox"
)

// Defaults and bounds of Config.
const (
	DefaultSampleInterval = 5 * time.Second
	MinSampleInterval     = time.Second
	MaxSampleInterval     = time.Minute
	DefaultHistory        = time.Hour
	MaxHistory            = 24 * time.Hour
	DefaultQueryTimeout   = 10 * time.Second
	// MaxScopes bounds how many scopes the sampler follows (discovered and
	// configured together), and so its cost and memory.
	MaxScopes = 1000
	// MinTokenBytes is the shortest token Config.Tokens accepts: 128 bits
	// of hex or base64 text.
	MinTokenBytes = 16
	// SessionLifetime is how long a sign-in through the login form lasts.
	SessionLifetime = 12 * time.Hour
)

// ErrConfig is wrapped by every error New returns about its Config.
var ErrConfig = errors.New("dashboard: invalid config")

// Config configures a Dashboard. Only DB is required; the zero values of the
// rest give a read-only dashboard that samples every 5 s and keeps an hour.
type Config struct {
	// DB is the connection the store runs on (the pool passed to
	// outbox.NewPostgresStore). The dashboard's own read-only statements
	// run on it: scope discovery, the sampler's count of enqueued messages,
	// and dead letters grouped by error (queries/pgoutbox_dashboard.sql).
	DB Conn
	// Scopes the dashboard always follows and offers, besides those it
	// discovers (scopes holding pending, claimed or dead messages) and the
	// store's own. Ignored when the store is scoped: then the dashboard
	// shows that one scope only.
	Scopes []string
	// EnableWrites turns on redrive and purge. Writes need Tokens; without
	// EnableWrites the dashboard changes nothing, whoever asks.
	EnableWrites bool
	// Tokens maps operator names to their secret tokens. A request is
	// authenticated by "Authorization: Bearer TOKEN", by basic auth
	// (NAME:TOKEN), or by the session cookie the login form sets. Tokens
	// are compared in constant time; each must be at least MinTokenBytes.
	// The name is what the audit log records as "who".
	Tokens map[string]string
	// RequireAuthForReads makes every page, the JSON API and /metrics need
	// a token too (for payloads that must not be shown to whoever reaches
	// the port). Needs Tokens.
	RequireAuthForReads bool
	// SampleInterval is how often Run samples the outbox: between
	// MinSampleInterval and MaxSampleInterval, default
	// DefaultSampleInterval. Each sample costs one Stats per scope, a loose
	// index scan for scopes, and a primary-key range scan over the messages
	// enqueued since the last one (see the package doc).
	SampleInterval time.Duration
	// History is how long samples are kept for the charts: default
	// DefaultHistory (an hour), at least SampleInterval, at most MaxHistory.
	History time.Duration
	// QueryTimeout bounds each page's statements (default
	// DefaultQueryTimeout). Purges are bounded by the request only.
	QueryTimeout time.Duration
	// BasePath is the path the handler is mounted at, such as "/outbox"
	// (no trailing slash; "" for the root). The handler strips it itself:
	// mount it with mux.Handle(BasePath+"/", d).
	BasePath string
	// Logger receives the audit log of writes and sign-ins and the
	// sampler's errors. Default slog.Default().
	Logger *slog.Logger
	// Registry is where the Prometheus exporter registers and what /metrics
	// serves. Default: a registry of the dashboard's own, with the Go
	// runtime and process collectors.
	Registry *prometheus.Registry
}

// Conn is what the dashboard's own statements run on: a *pgxpool.Pool (or
// a *pgx.Conn, which is not safe for concurrent requests). The sampler reads
// in a transaction of its own, so that its counts agree.
type Conn interface {
	db.DBTX
	BeginTx(ctx context.Context, opts pgx.TxOptions) (pgx.Tx, error)
}

// config is a validated Config with defaults applied.
type config struct {
	Config
	tokens []credential
}

// credential is one operator's token, kept as a digest so that every
// comparison takes the same time whatever the lengths.
type credential struct {
	name   string
	digest [sha256.Size]byte
}

func (c Config) validate() (config, error) {
	bad := func(field, format string, args ...any) (config, error) {
		return config{}, fmt.Errorf("%w: %s: %s", ErrConfig, field, fmt.Sprintf(format, args...))
	}
	if c.DB == nil {
		return bad("DB", "is required: the connection the store runs on")
	}
	if c.SampleInterval == 0 {
		c.SampleInterval = DefaultSampleInterval
	}
	if c.SampleInterval < MinSampleInterval || c.SampleInterval > MaxSampleInterval {
		return bad("SampleInterval", "must be between %s and %s, got %s", MinSampleInterval, MaxSampleInterval, c.SampleInterval)
	}
	if c.History == 0 {
		c.History = DefaultHistory
	}
	if c.History < c.SampleInterval || c.History > MaxHistory {
		return bad("History", "must be between the sample interval (%s) and %s, got %s", c.SampleInterval, MaxHistory, c.History)
	}
	if c.QueryTimeout == 0 {
		c.QueryTimeout = DefaultQueryTimeout
	}
	if c.QueryTimeout < 0 {
		return bad("QueryTimeout", "must not be negative, got %s", c.QueryTimeout)
	}
	if c.BasePath != "" && (!strings.HasPrefix(c.BasePath, "/") || strings.HasSuffix(c.BasePath, "/") ||
		strings.ContainsAny(c.BasePath, "?#%\\ ")) {
		return bad("BasePath", "must start with / and not end with one (like /outbox), got %q", c.BasePath)
	}
	if len(c.Scopes) > MaxScopes {
		return bad("Scopes", "at most %d, got %d", MaxScopes, len(c.Scopes))
	}
	for i, s := range c.Scopes {
		if err := outbox.ValidateScope(s); err != nil {
			return bad(fmt.Sprintf("Scopes[%d]", i), "%v", err)
		}
	}
	out := config{Config: c}
	for name, token := range c.Tokens {
		if strings.TrimSpace(name) == "" || strings.IndexFunc(name, unicode.IsControl) >= 0 || len(name) > 64 {
			return bad("Tokens", "operator name %q must be 1 to 64 bytes without control characters", name)
		}
		if len(token) < MinTokenBytes {
			return bad("Tokens", "the token of %q is %d bytes; at least %d are needed", name, len(token), MinTokenBytes)
		}
		out.tokens = append(out.tokens, credential{name: name, digest: sha256.Sum256([]byte(token))})
	}
	if c.EnableWrites && len(out.tokens) == 0 {
		return bad("Tokens", "writes are enabled but no token is set: writes need authentication")
	}
	if c.RequireAuthForReads && len(out.tokens) == 0 {
		return bad("Tokens", "RequireAuthForReads is set but no token is")
	}
	if out.Logger == nil {
		out.Logger = slog.Default()
	}
	return out, nil
}
