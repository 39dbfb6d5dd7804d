# pgoutbox developer targets. Tools (sqlc, goose, golangci-lint) are pinned in
# tools/go.mod and run through `go tool`, so a fresh machine needs only Go and
# a Docker engine.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
GO ?= go
TOOL := $(GO) tool -modfile=tools/go.mod
# The broker sinks live in modules of their own, so the library never
# depends on a broker client; each is verified, linted and tested like the
# root module.
SINK_MODULES := sink/nats sink/kafka sink/amqp
# Debian packages the tests need (installed when missing; see
# scripts/debian-deps.sh).
TEST_DEBS := rabbitmq-server chromium pgbouncer

# Testcontainers' reaper needs a registry image; without it the suite
# terminates its own containers.
export TESTCONTAINERS_RYUK_DISABLED ?= true

.PHONY: all generate verify lint test test-deps demo postgres-image fuzz bench bench-smoke bench-sinks bench-sinks-smoke soak

all: verify lint test

## generate: regenerate db/ and examples/orders from queries/ and schema/ (sqlc)
generate:
	$(TOOL) sqlc generate

## verify: generated code is current, modules are tidy, code is gofmt'ed
verify:
	$(TOOL) sqlc diff
	scripts/verify-generated.sh
	$(GO) mod tidy -diff
	cd tools && $(GO) mod tidy -diff
	cd bench && $(GO) mod tidy -diff
	for m in $(SINK_MODULES); do (cd $$m && $(GO) mod tidy -diff); done
	@unformatted="$$(gofmt -l $$(git ls-files '*.go'))"; \
	if [ -n "$$unformatted" ]; then echo "gofmt would change: $$unformatted"; exit 1; fi

## lint: go vet and golangci-lint
lint:
	$(GO) vet ./...
	$(TOOL) golangci-lint run ./...
	cd bench && $(GO) vet ./... && $(GO) tool -modfile=../tools/go.mod golangci-lint run ./...
	for m in $(SINK_MODULES); do (cd $$m && $(GO) vet ./... && $(GO) tool -modfile=../../tools/go.mod golangci-lint run ./...); done

## test: unit and integration tests on real PostgreSQL (a Testcontainers
## container, or the server $OUTBOX_TEST_DATABASE_URL names), the sinks' tests
## on their brokers (embedded nats-server, kfake, Debian's rabbitmq-server)
## and the dashboard's test in headless Chromium (Debian packages installed
## when missing: test-deps)
test: test-deps
	@if [ -z "$${OUTBOX_TEST_DATABASE_URL:-}" ]; then \
		image="$$(scripts/postgres-image.sh)"; \
		echo "PostgreSQL image: $$image"; \
		export OUTBOX_TEST_POSTGRES_IMAGE="$$image"; \
	fi; \
	$(GO) test -race -count=1 ./...
	cd bench && $(GO) test -race -count=1 ./...
	for m in $(SINK_MODULES); do (cd $$m && $(GO) test -race -count=1 ./...); done

## test-deps: install the Debian packages the tests need, if missing
test-deps:
	scripts/debian-deps.sh $(TEST_DEBS)

## demo: the end-to-end demo, examples/demo ($DATABASE_URL, or PostgreSQL in
## a container)
demo:
	@if [ -z "$${DATABASE_URL:-}" ]; then \
		export OUTBOX_TEST_POSTGRES_IMAGE="$$(scripts/postgres-image.sh)"; \
	fi; \
	$(GO) run ./examples/demo

## postgres-image: print (and build if needed) the PostgreSQL image for tests
postgres-image:
	@scripts/postgres-image.sh

## fuzz: fuzz draft validation, scope ids and payload round trips through
## Postgres, FUZZTIME each (default 1m), the three at once
FUZZTIME ?= 1m
fuzz:
	@if [ -z "$${OUTBOX_TEST_DATABASE_URL:-}" ]; then \
		export OUTBOX_TEST_POSTGRES_IMAGE="$$(scripts/postgres-image.sh)"; \
	fi; \
	$(GO) test -run='^$$' -fuzz='^FuzzDraftValidate$$' -fuzztime=$(FUZZTIME) -parallel=1 ./outbox & a=$$!; \
	$(GO) test -run='^$$' -fuzz='^FuzzValidateScope$$' -fuzztime=$(FUZZTIME) -parallel=1 ./outbox & b=$$!; \
	$(GO) test -run='^$$' -fuzz='^FuzzPayloadRoundTrip$$' -fuzztime=$(FUZZTIME) -parallel=1 ./integration & c=$$!; \
	wait $$a && wait $$b && wait $$c

## soak: 10 minutes of producers and relays with random faults, then more
## model-test cases (not in CI)
SOAK ?= 10m
soak:
	@if [ -z "$${OUTBOX_TEST_DATABASE_URL:-}" ]; then \
		export OUTBOX_TEST_POSTGRES_IMAGE="$$(scripts/postgres-image.sh)"; \
	fi; \
	OUTBOX_SOAK=$(SOAK) $(GO) test -count=1 -timeout 0 -v -run '^TestSoak$$' ./integration | grep -E 'SOAK|soak:|^(---|ok|FAIL)'; \
	$(GO) test -count=1 -timeout 0 -run '^TestModelPostgresAgreesWithMemstore$$' -v ./integration -rapid.checks=5000 | grep -E 'model cases|rapid|^(---|ok|FAIL)'

## bench: the full comparison with River, PgQ and the raw-SQL floor, and
## ordered delivery's keyed figures (about 40 minutes); writes BENCHMARKS.md
## and benchmarks.png
bench:
	@if [ -z "$${DATABASE_URL:-}" ]; then \
		export OUTBOX_TEST_POSTGRES_IMAGE="$$(scripts/postgres-image.sh)"; \
	fi; \
	cd bench && $(GO) run . -out ../BENCHMARKS.md -chart ../benchmarks.png

## bench-sinks: outbox to broker-confirmed msg/s for each sink, against the
## same relay with a no-op handler (3 runs of 20,000 messages; not in CI);
## writes its section of BENCHMARKS.md, which `make bench` keeps
bench-sinks: test-deps
	@if [ -z "$${DATABASE_URL:-}" ]; then \
		export OUTBOX_TEST_POSTGRES_IMAGE="$$(scripts/postgres-image.sh)"; \
	fi; \
	cd bench && $(GO) run ./sinks -out ../BENCHMARKS.md

## bench-sinks-smoke: the sink benchmark with 300 messages, once (CI)
bench-sinks-smoke: test-deps
	@if [ -z "$${DATABASE_URL:-}" ]; then \
		export OUTBOX_TEST_POSTGRES_IMAGE="$$(scripts/postgres-image.sh)"; \
	fi; \
	cd bench && $(GO) run ./sinks -smoke

## bench-smoke: every benchmark scenario for a few seconds (CI)
## bench-smoke: every benchmark scenario and peer briefly (CI, under a
## minute); on the test server ($OUTBOX_TEST_DATABASE_URL) when CI has one
## instead of a container
bench-smoke:
	@url="$${DATABASE_URL:-$${OUTBOX_TEST_DATABASE_URL:-}}"; \
	if [ -z "$$url" ]; then \
		export OUTBOX_TEST_POSTGRES_IMAGE="$$(scripts/postgres-image.sh)"; \
	fi; \
	cd bench && $(GO) run . -smoke -database-url "$$url" -out "" -chart ""
