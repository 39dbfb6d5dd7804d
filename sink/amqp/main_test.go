package amqpsink_test

import (
	"context"
	"fmt"
	"os"
	"testing"

	"github.com/pgoutbox/pgoutbox/internal/rabbitserver"
)

// broker is the rabbitmq-server the tests of this package share; the fault
// test starts one of its own, since it kills it.
var broker *rabbitserver.Server

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "amqpsink-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = os.RemoveAll(dir) }()
	broker, err = rabbitserver.Start(context.Background(), dir)
	if err != nil {
		// Never skip: without its broker this package has not been tested.
		fmt.Fprintln(os.Stderr, "amqpsink tests need Debian's rabbitmq-server:", err)
		return 1
	}
	defer func() { _ = broker.Close() }()
	return m.Run()
}
