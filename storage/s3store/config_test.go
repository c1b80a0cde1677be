package s3store

import (
	"strings"
	"testing"
)

func TestParseURL(t *testing.T) {
	env := map[string]string{"AWS_ENDPOINT_URL": "http://env:9000", "AWS_REGION": "eu-west-3"}
	getenv := func(k string) string { return env[k] }
	cfg, err := ParseURL("s3://photos/team-a/prod?path-style=true&part-size=8388608", getenv)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Bucket != "photos" || cfg.Prefix != "team-a/prod/" || cfg.Endpoint != "http://env:9000" ||
		cfg.Region != "eu-west-3" || cfg.PathStyle == nil || !*cfg.PathStyle || cfg.PartSize != 8<<20 {
		t.Fatalf("got %+v", cfg)
	}
	// The address wins over the environment; the S3-specific variable
	// wins over the general one.
	env["AWS_ENDPOINT_URL_S3"] = "https://s3only:443"
	cfg, err = ParseURL("s3://b?region=us-east-1", getenv)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Endpoint != "https://s3only:443" || cfg.Region != "us-east-1" || cfg.Prefix != "" || cfg.PathStyle != nil {
		t.Fatalf("got %+v", cfg)
	}
	cfg, err = ParseURL("s3://b?endpoint=http://q:1", getenv)
	if err != nil || cfg.Endpoint != "http://q:1" {
		t.Fatalf("got %+v %v", cfg, err)
	}
}

func TestParseURLErrors(t *testing.T) {
	getenv := func(string) string { return "" }
	for _, tc := range []struct{ in, want string }{
		{"http://bucket", "scheme"},
		{"http://key:hunter2@bucket", "scheme"},
		{"s3://key:hunter2 x@bucket", "not a valid URL"},
		{"s3://", "no bucket"},
		{"s3://key:secret@bucket", "credentials do not go"},
		{"s3://b/Upper", "prefix"},
		{"s3://b/../x", "prefix"},
		{"s3://b?colour=blue", "unknown setting"},
		{"s3://b?path-style=maybe", "path-style"},
		{"s3://b?part-size=1000", "part-size"},
	} {
		_, err := ParseURL(tc.in, getenv)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseURL(%q) = %v, want an error about %q", tc.in, err, tc.want)
		}
		if err != nil && (strings.Contains(err.Error(), "secret") || strings.Contains(err.Error(), "hunter2")) {
			t.Errorf("ParseURL(%q): the error shows the secret: %v", tc.in, err)
		}
	}
}

func TestBadEndpoint(t *testing.T) {
	for _, e := range []string{"minio:9000", "ftp://h", "http://h/path"} {
		if _, err := (Config{Bucket: "b", Endpoint: e}).client(); err == nil {
			t.Errorf("endpoint %q accepted", e)
		}
	}
}
