package s3store_test

import (
	"context"
	"crypto/rand"
	"errors"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/imagestore/imagestore/storage"
	"github.com/imagestore/imagestore/storage/s3store"
	"github.com/imagestore/imagestore/storage/s3store/miniotest"
	"github.com/imagestore/imagestore/storage/storetest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	miniotest.StopShared()
	os.Exit(code)
}

// newStore returns a store on the shared MinIO server: a fresh bucket for
// the test, and a prefix in it, so that the prefix is exercised too.
func newStore(t *testing.T, partSize int) *s3store.Store {
	t.Helper()
	srv := miniotest.Shared(t)
	ctx := context.Background()
	bucket, err := srv.NewBucket(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s, err := s3store.New(ctx, s3store.Config{
		Bucket: bucket, Prefix: "imagestore/", Endpoint: srv.Endpoint, Region: "us-east-1",
		PartSize: partSize,
		Creds:    credentials.NewStaticV4(miniotest.AccessKey, miniotest.SecretKey, ""),
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storage.Store { return newStore(t, 0) })
}

// TestPrefixIsolation checks that a store sees only its own prefix of a
// shared bucket.
func TestPrefixIsolation(t *testing.T) {
	srv := miniotest.Shared(t)
	ctx := context.Background()
	bucket, err := srv.NewBucket(ctx)
	if err != nil {
		t.Fatal(err)
	}
	open := func(prefix string) *s3store.Store {
		s, err := s3store.New(ctx, s3store.Config{Bucket: bucket, Prefix: prefix, Endpoint: srv.Endpoint, Region: "us-east-1",
			Creds: credentials.NewStaticV4(miniotest.AccessKey, miniotest.SecretKey, "")})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	a, b := open("a/"), open("ab/")
	if _, err := a.Put(ctx, "k", strings.NewReader("in a"), storage.Cond{}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Stat(ctx, "k"); err == nil {
		t.Fatal("store ab/ sees store a/'s key")
	}
	var keys []string
	for k, err := range b.List(ctx, "") {
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k)
	}
	if len(keys) != 0 {
		t.Fatalf("store ab/ lists %q", keys)
	}
}

func TestMissingBucket(t *testing.T) {
	srv := miniotest.Shared(t)
	_, err := s3store.New(context.Background(), s3store.Config{Bucket: "no-such-bucket-" + strings.ToLower(rand.Text()[:8]),
		Endpoint: srv.Endpoint, Region: "us-east-1",
		Creds: credentials.NewStaticV4(miniotest.AccessKey, miniotest.SecretKey, "")})
	if err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("New on a missing bucket: %v, want an error saying it does not exist", err)
	}
}

func TestWrongCredentials(t *testing.T) {
	srv := miniotest.Shared(t)
	ctx := context.Background()
	bucket, err := srv.NewBucket(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_, err = s3store.New(ctx, s3store.Config{Bucket: bucket, Endpoint: srv.Endpoint, Region: "us-east-1",
		Creds: credentials.NewStaticV4(miniotest.AccessKey, "not-the-secret", "")})
	if err == nil {
		t.Fatal("New with a wrong secret succeeded")
	}
	if strings.Contains(err.Error(), "not-the-secret") {
		t.Fatalf("the error shows the secret: %v", err)
	}
}

// TestFailedMultipartLeavesNothing fails a Put after more than one part
// has gone to the server: the key keeps its value and the upload is
// aborted.
func TestFailedMultipartLeavesNothing(t *testing.T) {
	s := newStore(t, 0)
	ctx := context.Background()
	a, err := s.Put(ctx, "big", strings.NewReader("old"), storage.Cond{})
	if err != nil {
		t.Fatal(err)
	}
	boom := errors.New("client went away")
	if _, err := s.Put(ctx, "big", &storetest.FailingReader{N: 2*s3store.MinPartSize + 100, Err: boom}, storage.Cond{IfMatch: a.ETag}); !errors.Is(err, boom) {
		t.Fatalf("Put error = %v, want the reader's", err)
	}
	if st, err := s.Stat(ctx, "big"); err != nil || st.ETag != a.ETag {
		t.Fatalf("after a failed multipart Put: %+v %v, want ETag %q", st, err, a.ETag)
	}
	if left, err := s.Leftovers(); err != nil || len(left) != 0 {
		t.Fatalf("incomplete uploads left: %q %v", left, err)
	}
}

// TestMultipartCondition checks that a multipart upload's condition is
// decided at completion: IfAbsent on an existing key and a stale IfMatch
// are refused after all parts were sent.
func TestMultipartCondition(t *testing.T) {
	s := newStore(t, 0)
	ctx := context.Background()
	big := func() io.Reader { return io.LimitReader(zeros{}, s3store.MinPartSize+1) }
	a, err := s.Put(ctx, "k", big(), storage.Cond{IfAbsent: true})
	if err != nil {
		t.Fatal(err)
	}
	if a.Size != s3store.MinPartSize+1 {
		t.Fatalf("size %d", a.Size)
	}
	if _, err := s.Put(ctx, "k", big(), storage.Cond{IfAbsent: true}); !errors.Is(err, storage.ErrPrecondition) {
		t.Fatalf("second IfAbsent multipart Put: %v, want ErrPrecondition", err)
	}
	b, err := s.Put(ctx, "k", big(), storage.Cond{IfMatch: a.ETag})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put(ctx, "k", big(), storage.Cond{IfMatch: "0123456789abcdef0123456789abcdef-2"}); !errors.Is(err, storage.ErrPrecondition) {
		t.Fatalf("stale IfMatch multipart Put: %v, want ErrPrecondition", err)
	}
	if st, err := s.Stat(ctx, "k"); err != nil || st.ETag != b.ETag {
		t.Fatalf("Stat = %+v %v, want ETag %q", st, err, b.ETag)
	}
	if left, err := s.Leftovers(); err != nil || len(left) != 0 {
		t.Fatalf("incomplete uploads left: %q %v", left, err)
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }
