package s3store

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/imagestore/imagestore/storage"
)

// Config says where the store is and how to reach it. ParseURL fills it from
// an s3:// address and the standard AWS_* environment variables.
type Config struct {
	// Bucket is the bucket's name; it must exist.
	Bucket string
	// Prefix is put before every key: "" or a path ending in "/", so that
	// several stores can share a bucket.
	Prefix string
	// Endpoint is the server's URL (https://host:port or http://host:port);
	// empty means AWS S3 in Region.
	Endpoint string
	// Region is the bucket's region; empty lets the client ask the server.
	Region string
	// PathStyle addresses the bucket as host/bucket rather than as
	// bucket.host, as most self-hosted servers want. Nil chooses by
	// endpoint (virtual-host style for AWS, path style for others).
	PathStyle *bool
	// CAFile is a PEM file of certificates to trust for an https endpoint,
	// beside the system's.
	CAFile string
	// PartSize is the size of one part of a multipart upload, and so the
	// most memory one Put holds; 0 means MinPartSize.
	PartSize int
	// Creds are the credentials; nil takes them from the environment
	// (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN), then the
	// AWS shared credentials file (AWS_SHARED_CREDENTIALS_FILE, AWS_PROFILE),
	// then the instance's IAM role.
	Creds *credentials.Credentials
}

// ParseURL reads a store address of the form
//
//	s3://bucket[/prefix][?endpoint=URL&region=R&path-style=true|false&ca-file=PATH&part-size=BYTES]
//
// Settings missing from the query come from the environment, as the AWS
// tools read it: AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL for the endpoint,
// AWS_REGION or AWS_DEFAULT_REGION for the region. Credentials never go in
// the address: see Config.Creds.
func ParseURL(raw string, getenv func(string) string) (Config, error) {
	u, err := url.Parse(raw)
	if err != nil {
		// Not the parser's message: it quotes the address, which may
		// hold a secret someone put there.
		return Config{}, errors.New("s3 store address is not a valid URL (s3://bucket/prefix?setting=value)")
	}
	if u.Scheme != "s3" {
		return Config{}, fmt.Errorf("s3 store address %q: the scheme must be s3://", u.Redacted())
	}
	if u.User != nil {
		return Config{}, errors.New("s3 store address: credentials do not go in the address; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
	}
	cfg := Config{Bucket: u.Host}
	if cfg.Bucket == "" {
		return Config{}, fmt.Errorf("s3 store address %q names no bucket", u.Redacted())
	}
	if p := strings.Trim(u.Path, "/"); p != "" {
		if !storage.ValidKey(p) {
			return Config{}, fmt.Errorf("s3 store address: prefix %q must be lower-case segments of [a-z0-9._-]", p)
		}
		cfg.Prefix = p + "/"
	}
	q := u.Query()
	for k := range q {
		switch k {
		case "endpoint", "region", "path-style", "ca-file", "part-size":
		default:
			return Config{}, fmt.Errorf("s3 store address: unknown setting %q (known: endpoint, region, path-style, ca-file, part-size)", k)
		}
	}
	first := func(vals ...string) string {
		for _, v := range vals {
			if v != "" {
				return v
			}
		}
		return ""
	}
	cfg.Endpoint = first(q.Get("endpoint"), getenv("AWS_ENDPOINT_URL_S3"), getenv("AWS_ENDPOINT_URL"))
	cfg.Region = first(q.Get("region"), getenv("AWS_REGION"), getenv("AWS_DEFAULT_REGION"))
	cfg.CAFile = q.Get("ca-file")
	if v := q.Get("path-style"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return Config{}, fmt.Errorf("s3 store address: path-style=%q is not true or false", v)
		}
		cfg.PathStyle = &b
	}
	if v := q.Get("part-size"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < MinPartSize || n > 1<<30 {
			return Config{}, fmt.Errorf("s3 store address: part-size=%q must be a number of bytes from %d to %d", v, MinPartSize, 1<<30)
		}
		cfg.PartSize = n
	}
	return cfg, nil
}

// client makes the minio-go client for cfg.
func (cfg Config) client() (*minio.Client, error) {
	host, secure := "s3.amazonaws.com", true
	if cfg.Endpoint != "" {
		e, err := url.Parse(cfg.Endpoint)
		if err != nil || e.Host == "" || (e.Scheme != "http" && e.Scheme != "https") || strings.Trim(e.Path, "/") != "" {
			return nil, fmt.Errorf("s3 endpoint %q: want http://host[:port] or https://host[:port]", cfg.Endpoint)
		}
		host, secure = e.Host, e.Scheme == "https"
	}
	creds := cfg.Creds
	if creds == nil {
		creds = credentials.NewChainCredentials([]credentials.Provider{
			&credentials.EnvAWS{},
			&credentials.FileAWSCredentials{},
			&credentials.IAM{},
		})
	}
	transport, err := minio.DefaultTransport(secure)
	if err != nil {
		return nil, err
	}
	// One server takes many requests at once from every imagestore
	// request in flight: keep that many connections open.
	transport.MaxIdleConnsPerHost = 256
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("s3 ca-file: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("s3 ca-file %s holds no PEM certificate", cfg.CAFile)
		}
		if transport.TLSClientConfig == nil {
			transport.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		transport.TLSClientConfig.RootCAs = pool
	}
	lookup := minio.BucketLookupAuto
	if cfg.PathStyle != nil {
		lookup = minio.BucketLookupDNS
		if *cfg.PathStyle {
			lookup = minio.BucketLookupPath
		}
	}
	c, err := minio.New(host, &minio.Options{
		Creds: creds, Secure: secure, Region: cfg.Region,
		BucketLookup: lookup, Transport: transport,
	})
	return c, err
}
