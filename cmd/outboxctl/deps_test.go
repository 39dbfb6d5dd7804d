package main

import (
	"os/exec"
	"strings"
	"testing"
)

// The operator's binary carries no container stack: outboxctl starts no
// server, and the demo and the comparison bench, which do, are programs of
// their own. Issue 14 measured 21.4 MB with Testcontainers linked, 16.7 MB
// without.
func TestOutboxctlLinksNoContainerLibrary(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, banned := range []string{"github.com/testcontainers/", "github.com/moby/", "github.com/docker/", "internal/pgserver", "internal/pgtest"} {
			if strings.Contains(dep, banned) {
				t.Errorf("outboxctl depends on %s", dep)
			}
		}
	}
}
