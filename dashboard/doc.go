// Package dashboard is pgoutbox's web dashboard for operators: an
// http.Handler over an *outbox.PostgresStore that shows the backlog, the
// failing targets and their dead letters, and (when allowed) redrives and
// purges them. `outboxctl serve` runs it on its own; a service mounts it on
// its own mux:
//
//	d, err := dashboard.New(store, dashboard.Config{DB: pool, BasePath: "/outbox"})
//	go d.Run(ctx)            // the sampler; pages read what it sampled
//	defer d.Close()
//	mux.Handle("/outbox/", d)
//	relayCfg.MeterProvider = d.MeterProvider() // relay metrics on /outbox/metrics
//
// # Pages
//
//   - Overview (/): per lane and target, pending, due, the oldest due
//     message's age, claimed, expired leases, dead letters and deliveries
//     per second, refreshed in place every sample interval, with charts of
//     the backlog and the delivery rate over the last hour.
//   - Messages (/messages): filters by status, lane, target, ordering key,
//     dedupe key and error text, pages by id; /messages/{id} shows every
//     field, the ordering key (with a link to the key's messages), the
//     headers sorted by name, the last error and the pretty-printed
//     payload.
//   - Dead letters (/dead-letters): grouped by lane, target and error;
//     redrive one, a selection, a group (its exact error) or all of a lane
//     and target whose error contains a text. A dead letter that holds its
//     ordering key (a dead-lettered head, which the key's later messages
//     wait behind) is marked "holds key", and its key can be released after
//     a confirmation page (/dead-letters/release-key) that says how many
//     messages wait (counted up to 100): the key's next message is
//     delivered, the dead letter stays one
//     (outbox.PostgresStore.ReleaseOrderingKey). The message's own page
//     gives the count too.
//   - Purge (/purge): a dry-run count first, then the purge.
//   - /metrics: Prometheus text from the OpenTelemetry Prometheus exporter:
//     gauges pgoutbox_messages_{pending,due,claimed,expired_leases,
//     dead_letters,oldest_due_age_seconds,delivered_rate} per scope, lane and
//     target, the sampler's own duration and errors, and whatever else
//     reports through MeterProvider (relay metrics).
//   - /api/overview: the overview as JSON, for scripts.
//
// With an unscoped store the dashboard covers every scope: a selector
// (?scope=) offers the unscoped store, Config.Scopes, and the scopes that
// hold pending, claimed or dead messages, found with a loose index scan
// (one index probe per scope, whatever the table's size). A scoped store
// limits the dashboard to its scope.
//
// # The sampler
//
// Requests never count rows: the overview, its JSON and /metrics read the
// latest sample in memory, and the charts a ring of the last hour of them
// (History / SampleInterval samples). Run takes a sample every
// SampleInterval (default 5 s), in one read-only transaction: Stats for
// each followed scope (the partial indexes of pending, claimed and dead
// messages, so its cost follows the live backlog, not the history), the
// scope discovery, and a range scan of the primary key over the messages
// enqueued since the last sample. Deliveries are derived, not counted: what
// was live at the last sample plus what was enqueued since, minus what is
// live now (see Sample for the two cases that bend it). So sampling reads
// no delivered row and adds nothing to the claim, ack or nack path.
// BENCHMARKS.md gives its cost on a table of 1M delivered and 100k pending
// messages.
//
// # Safety
//
// The dashboard is an admin surface, so:
//
//   - It is read-only unless Config.EnableWrites is set, and writes need
//     an operator token (Config.Tokens): "Authorization: Bearer TOKEN",
//     basic auth NAME:TOKEN, or the session cookie set by the sign-in form.
//     Tokens are compared in constant time (digests of equal length, every
//     token compared). RequireAuthForReads extends this to every page.
//   - CSRF: every request with an unsafe method passes
//     net/http.CrossOriginProtection, which refuses cross-origin browser
//     requests by their Sec-Fetch-Site header (or, for older browsers, Origin
//     against Host). The session cookie is HttpOnly, SameSite=Strict and
//     Secure over TLS, and scoped to BasePath; it is an HMAC-signed name and
//     expiry under a key drawn at start. Non-browser clients send no such
//     headers and pass, which is why writes also need a token, one that a
//     cross-site page cannot attach.
//   - Every write is logged with log/slog at Info: who (operator name and
//     how they authenticated), from where, what, and how many; refusals and
//     failed sign-ins at Warn.
//   - Every value from the database reaches the page through html/template,
//     so payloads, errors, lanes and targets render as text; lists show
//     payloads cut to 120 characters. The Content-Security-Policy allows
//     scripts and styles from the dashboard itself only (no inline script),
//     forms that post to itself, and no framing (frame-ancestors 'none').
//     Its script and stylesheet are embedded: nothing is fetched from
//     elsewhere. Notices after a write are signed, so a crafted link cannot
//     put words in the dashboard's mouth.
//   - outboxctl serve listens on 127.0.0.1:8080 by default and reads the
//     token from an environment variable, never from a flag value that the
//     process list would show.
package dashboard
