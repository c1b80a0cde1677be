package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
)

func TestOpenStore(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	for _, spec := range []string{dir, "file://" + dir} {
		s, err := openStore(context.Background(), spec, func(string) string { return "" })
		if err != nil {
			t.Fatalf("openStore(%q): %v", spec, err)
		}
		if !s.sole || s.desc != dir {
			t.Errorf("openStore(%q) = sole %v, desc %q; want a data folder held alone", spec, s.sole, s.desc)
		}
		s.close()
	}
}

func TestStoreFlagErrors(t *testing.T) {
	for _, tc := range []struct{ spec, want string }{
		{"s3://bucket?colour=blue", "unknown setting"},
		{"s3://bucket?endpoint=minio:9000", "want http://host[:port]"},
		{"s3://key:hunter2@bucket", "credentials do not go in the address"},
	} {
		var stderr strings.Builder
		err := run(context.Background(), []string{"--store", tc.spec, "--addr", "127.0.0.1:0"}, func(string) string { return "" }, &stderr, &stderr)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("--store %s: %v, want an error about %q", tc.spec, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error()+stderr.String(), "hunter2") {
			t.Errorf("--store %s: the secret shows: %v %s", tc.spec, err, stderr.String())
		}
	}
}
