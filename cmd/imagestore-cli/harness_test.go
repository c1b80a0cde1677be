package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/imagestore/imagestore/internal/servertest"
)

// serverBinary is the real server, and cliBinary this command, built
// once for the package's tests.
var serverBinary, cliBinary string

func TestMain(m *testing.M) {
	servertest.Main(m, map[string]*string{servertest.ServerPackage: &serverBinary, ".": &cliBinary})
}

// startServer runs the server on a free loopback port over a new data
// folder, with args added to servertest's defaults (no rate limits, no
// free-space reserve), and returns its URL. It is killed when the test
// ends.
func startServer(t *testing.T, args ...string) string {
	t.Helper()
	return servertest.Start(t, serverBinary, "", servertest.Options{Args: args}).URL
}

// fixture returns a test image of imagetype/testdata.
func fixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "imagetype", "testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}
