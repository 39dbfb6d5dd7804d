// Package pgserver provides the PostgreSQL server that pgoutbox's tests, demo
// and benchmarks run against: the one a connection string names, or a
// container started with Testcontainers.
//
// The container's image is a setting ($OUTBOX_TEST_POSTGRES_IMAGE) that
// defaults to a pinned official tag. On machines with no registry,
// scripts/postgres-image.sh builds an equivalent image from Debian packages
// and prints its name; `make test` and `make demo` export it.
package pgserver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/testcontainers/testcontainers-go"
	tclog "github.com/testcontainers/testcontainers-go/log"
	"github.com/testcontainers/testcontainers-go/modules/postgres"
)

const (
	// DefaultImage is the official image the suite runs on when nothing else
	// is configured. scripts/postgres-image.sh uses the same default.
	DefaultImage = "postgres:15.10-bookworm"
	// ImageEnv names the environment variable that overrides DefaultImage.
	ImageEnv = "OUTBOX_TEST_POSTGRES_IMAGE"
)

// Settings are server settings passed as `postgres -c key=value`.
type Settings []string

// FastSettings trade durability for speed: right for tests, whose databases
// are thrown away, and wrong for benchmarks that claim durable figures.
func FastSettings() Settings {
	return Settings{"fsync=off", "synchronous_commit=off", "full_page_writes=off"}
}

// Server is a running PostgreSQL server.
type Server struct {
	// URL connects to the server's "postgres" database as a superuser.
	URL string
	// Container is the Testcontainers container, nil for an external server.
	Container *postgres.PostgresContainer
}

// Image returns the image to start: $OUTBOX_TEST_POSTGRES_IMAGE, else
// DefaultImage.
func Image() string {
	if img := strings.TrimSpace(os.Getenv(ImageEnv)); img != "" {
		return img
	}
	return DefaultImage
}

// External returns a Server for an already running PostgreSQL at url.
func External(url string) *Server { return &Server{URL: url} }

// shmSize is the container's /dev/shm: room for maintenance_work_mem's
// default (64 MiB) in a parallel VACUUM, and more.
const shmSize = 512 << 20

// StartContainer starts PostgreSQL in a container of Image() with the given
// settings (plus jit=off and room for 300 connections) and waits until it
// accepts connections. It fails with the reason when no container can be
// started, for example when there is no Docker engine.
func StartContainer(ctx context.Context, settings Settings) (*Server, error) {
	// Ryuk, Testcontainers' reaper, needs an image from a registry. Without it
	// the caller must Stop the server; Stop is deferred everywhere we start one.
	if os.Getenv("TESTCONTAINERS_RYUK_DISABLED") == "" {
		_ = os.Setenv("TESTCONTAINERS_RYUK_DISABLED", "true")
	}
	localDockerHost()
	image := Image()
	cmd := []string{"postgres", "-c", "jit=off", "-c", "max_connections=300"}
	for _, s := range settings {
		cmd = append(cmd, "-c", s)
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	c, err := postgres.Run(ctx, image,
		postgres.WithDatabase("postgres"),
		postgres.WithUsername("postgres"),
		postgres.WithPassword("postgres"),
		postgres.BasicWaitStrategies(),
		testcontainers.WithCmd(cmd...),
		testcontainers.WithLogger(tclog.NewNoopLogger()),
		// Docker gives a container 64 MiB of /dev/shm, where PostgreSQL
		// keeps dynamic shared memory: a parallel VACUUM of a large table
		// asks for up to maintenance_work_mem there and failed with "could
		// not resize shared memory segment" in the bench's growth scenario.
		testcontainers.WithHostConfigModifier(func(hc *container.HostConfig) { hc.ShmSize = shmSize }),
	)
	if err != nil {
		if c != nil {
			_ = testcontainers.TerminateContainer(c)
		}
		return nil, fmt.Errorf("pgserver: starting PostgreSQL from image %s (set %s to another image, or run scripts/postgres-image.sh to build one): %w", image, ImageEnv, err)
	}
	url, err := c.ConnectionString(ctx, "sslmode=disable")
	if err != nil {
		_ = testcontainers.TerminateContainer(c)
		return nil, fmt.Errorf("pgserver: connection string: %w", err)
	}
	return &Server{URL: url, Container: c}, nil
}

// localDockerHost points Testcontainers at localhost when the Docker engine
// runs in this network namespace. Inside a container (/.dockerenv exists)
// Testcontainers otherwise dials the bridge network's gateway, or failing
// that the default route's; on machines whose engine shares the container's
// namespace neither reaches the published ports, and every start times out.
// The engine's bridge interface being here is the sign; an explicit
// TESTCONTAINERS_HOST_OVERRIDE always wins.
func localDockerHost() {
	if _, set := os.LookupEnv("TESTCONTAINERS_HOST_OVERRIDE"); set {
		return
	}
	if _, err := os.Stat("/.dockerenv"); err != nil {
		return
	}
	if _, err := net.InterfaceByName("docker0"); err != nil {
		return
	}
	_ = os.Setenv("TESTCONTAINERS_HOST_OVERRIDE", "localhost")
}

// Stop removes the container; it does nothing for an external server.
func (s *Server) Stop() error {
	if s == nil || s.Container == nil {
		return nil
	}
	if err := testcontainers.TerminateContainer(s.Container); err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("pgserver: stopping container: %w", err)
	}
	return nil
}
