// Package s3store is a storage.Store on an S3-compatible object store (AWS
// S3, MinIO, Ceph, R2, SeaweedFS...), through the minio-go client.
//
// Each key is one object under an optional prefix in one bucket. The
// store's conditional writes are S3's own: a Put with Cond.IfAbsent sends
// If-None-Match: *, one with Cond.IfMatch sends If-Match, and the object
// store decides, so that several imagestore servers sharing a bucket keep
// the same invariants as one server on a disk, with no lock and no
// database. Values stream in and out: a Put holds at most one part
// (Config.PartSize) in memory, sending larger values as a multipart upload
// whose completion carries the condition.
//
// ETags are the object store's: for S3 they are hashes of the content, so
// writing identical bytes again may keep the ETag. The storage contract
// allows that (a compare-and-swap against identical content loses nothing).
package s3store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/imagestore/imagestore/storage"
)

// MinPartSize is the smallest part S3 accepts in a multipart upload (but
// the last).
const MinPartSize = 5 << 20

// smallBuffers hold the start of each value written: all of a small one.
var smallBuffers = sync.Pool{New: func() any { b := make([]byte, 256<<10); return &b }}

// Store is a storage.Store in one bucket of an S3-compatible server.
type Store struct {
	core     minio.Core
	bucket   string
	prefix   string // "" or ending in "/"
	partSize int
	parts    sync.Pool // of *[]byte, partSize long
}

var _ storage.Store = (*Store)(nil)

// New connects to the bucket that cfg names and checks that it exists.
func New(ctx context.Context, cfg Config) (*Store, error) {
	client, err := cfg.client()
	if err != nil {
		return nil, err
	}
	s := &Store{core: minio.Core{Client: client}, bucket: cfg.Bucket, prefix: cfg.Prefix, partSize: cfg.PartSize}
	if s.partSize == 0 {
		s.partSize = MinPartSize
	}
	if s.partSize < MinPartSize {
		return nil, fmt.Errorf("s3: part size %d is below the minimum of %d", s.partSize, MinPartSize)
	}
	s.parts.New = func() any { b := make([]byte, s.partSize); return &b }
	ok, err := client.BucketExists(ctx, cfg.Bucket)
	if err != nil {
		return nil, fmt.Errorf("s3: checking bucket %q at %s: %w", cfg.Bucket, client.EndpointURL().Host, mapErr(err))
	}
	if !ok {
		return nil, fmt.Errorf("s3: bucket %q does not exist at %s", cfg.Bucket, client.EndpointURL().Host)
	}
	return s, nil
}

// String describes the store for logs: no credentials.
func (s *Store) String() string {
	return "s3://" + s.bucket + "/" + s.prefix + " at " + s.core.EndpointURL().Host
}

func keyErr(key string) error {
	return fmt.Errorf("%w: %q", storage.ErrInvalidKey, key)
}

func (s *Store) object(key string) string { return s.prefix + key }

// mapErr turns the object store's answers into the storage package's
// errors, keeping the original for the message.
func mapErr(err error) error {
	if err == nil {
		return nil
	}
	resp := minio.ToErrorResponse(err)
	switch {
	case resp.Code == "NoSuchKey" || resp.StatusCode == http.StatusNotFound && resp.Code != "NoSuchBucket":
		return fmt.Errorf("%w (%v)", storage.ErrNotFound, err)
	case resp.StatusCode == http.StatusPreconditionFailed || resp.Code == "PreconditionFailed":
		return fmt.Errorf("%w (%v)", storage.ErrPrecondition, err)
	case resp.Code == "XMinioStorageFull" || resp.Code == "StorageFull" || resp.StatusCode == http.StatusInsufficientStorage:
		return fmt.Errorf("%w (%v)", storage.ErrInsufficientStorage, err)
	}
	return err
}

// putErr maps the answer to a PUT: If-Match on a missing key is a false
// condition, though S3 answers it with 404.
func putErr(err error, cond storage.Cond) error {
	err = mapErr(err)
	if cond.IfMatch != "" && errors.Is(err, storage.ErrNotFound) {
		return fmt.Errorf("%w (the key is missing)", storage.ErrPrecondition)
	}
	return err
}

// conflict reports S3's answer to a conditional write that raced another
// on the same key (409 ConditionalRequestConflict): the request may be
// sent again.
func conflict(err error) bool {
	resp := minio.ToErrorResponse(err)
	return resp.StatusCode == http.StatusConflict && resp.Code == "ConditionalRequestConflict"
}

func attrsOf(info minio.ObjectInfo) storage.Attrs {
	return storage.Attrs{Size: info.Size, ETag: info.ETag, ModTime: info.LastModified}
}

// Get implements storage.Store. The reader is the body of one GET, so it
// yields exactly one version whatever happens to the key meanwhile.
func (s *Store) Get(ctx context.Context, key string) (io.ReadCloser, storage.Attrs, error) {
	if !storage.ValidKey(key) {
		return nil, storage.Attrs{}, keyErr(key)
	}
	rc, info, _, err := s.core.GetObject(ctx, s.bucket, s.object(key), minio.GetObjectOptions{})
	if err != nil {
		return nil, storage.Attrs{}, fmt.Errorf("get %s: %w", key, mapErr(err))
	}
	return rc, attrsOf(info), nil
}

// Stat implements storage.Store.
func (s *Store) Stat(ctx context.Context, key string) (storage.Attrs, error) {
	if !storage.ValidKey(key) {
		return storage.Attrs{}, keyErr(key)
	}
	info, err := s.core.StatObject(ctx, s.bucket, s.object(key), minio.StatObjectOptions{})
	if err != nil {
		return storage.Attrs{}, fmt.Errorf("stat %s: %w", key, mapErr(err))
	}
	return attrsOf(info), nil
}

func putOptions(cond storage.Cond) minio.PutObjectOptions {
	var opts minio.PutObjectOptions
	switch {
	case cond.IfAbsent:
		opts.SetMatchETagExcept("*")
	case cond.IfMatch != "":
		opts.SetMatchETag(cond.IfMatch)
	}
	return opts
}

// Put implements storage.Store. A value that fits in one part goes in one
// PUT; a larger one goes as a multipart upload, completed only once r is
// read to its end, and aborted otherwise, so that a failed Put leaves the
// key as it was.
func (s *Store) Put(ctx context.Context, key string, r io.Reader, cond storage.Cond) (storage.Attrs, error) {
	if !storage.ValidKey(key) {
		return storage.Attrs{}, keyErr(key)
	}
	if err := storage.CheckCond(cond); err != nil {
		return storage.Attrs{}, err
	}
	// Most images are far smaller than a part: read into a small buffer
	// first, and take a whole part's buffer only for a value that fills it.
	sp := smallBuffers.Get().(*[]byte)
	defer smallBuffers.Put(sp)
	n, rerr := io.ReadFull(r, *sp)
	switch rerr {
	case nil: // more to come
	case io.EOF, io.ErrUnexpectedEOF:
		return s.putSingle(ctx, key, (*sp)[:n], cond)
	default:
		return storage.Attrs{}, rerr
	}
	bp := s.parts.Get().(*[]byte)
	defer s.parts.Put(bp)
	buf := *bp
	copy(buf, *sp)
	m, rerr := io.ReadFull(r, buf[n:])
	switch rerr {
	case nil: // a whole part, and maybe more
	case io.EOF, io.ErrUnexpectedEOF:
		return s.putSingle(ctx, key, buf[:n+m], cond)
	default:
		return storage.Attrs{}, rerr
	}
	return s.putMultipart(ctx, key, buf, r, cond)
}

func (s *Store) putSingle(ctx context.Context, key string, data []byte, cond storage.Cond) (storage.Attrs, error) {
	opts := putOptions(cond)
	for attempt := 0; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return storage.Attrs{}, err
		}
		info, err := s.core.PutObject(ctx, s.bucket, s.object(key), bytes.NewReader(data), int64(len(data)), "", "", opts)
		if conflict(err) && attempt < 5 {
			continue
		}
		if err != nil {
			return storage.Attrs{}, fmt.Errorf("put %s: %w", key, putErr(err, cond))
		}
		return s.putAttrs(info, int64(len(data))), nil
	}
}

// putAttrs completes what a PUT answered: not every server sends
// Last-Modified with it.
func (s *Store) putAttrs(info minio.UploadInfo, size int64) storage.Attrs {
	mod := info.LastModified
	if mod.IsZero() {
		mod = time.Now()
	}
	return storage.Attrs{Size: size, ETag: info.ETag, ModTime: mod}
}

func (s *Store) putMultipart(ctx context.Context, key string, first []byte, r io.Reader, cond storage.Cond) (_ storage.Attrs, err error) {
	obj := s.object(key)
	id, err := s.core.NewMultipartUpload(ctx, s.bucket, obj, minio.PutObjectOptions{})
	if err != nil {
		return storage.Attrs{}, fmt.Errorf("put %s: starting a multipart upload: %w", key, mapErr(err))
	}
	defer func() {
		if err != nil {
			// Nothing was committed: drop the parts (a bucket lifecycle
			// rule for incomplete uploads catches any this misses).
			actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			s.core.AbortMultipartUpload(actx, s.bucket, obj, id)
			cancel()
		}
	}()
	var parts []minio.CompletePart
	var size int64
	buf := first
	n := len(first)
	for {
		part, err := s.core.PutObjectPart(ctx, s.bucket, obj, id, len(parts)+1, bytes.NewReader(buf[:n]), int64(n), minio.PutObjectPartOptions{})
		if err != nil {
			return storage.Attrs{}, fmt.Errorf("put %s: part %d: %w", key, len(parts)+1, mapErr(err))
		}
		parts = append(parts, minio.CompletePart{PartNumber: part.PartNumber, ETag: part.ETag})
		size += int64(n)
		var rerr error
		n, rerr = io.ReadFull(r, buf)
		if rerr == io.EOF {
			break
		}
		if rerr != nil && rerr != io.ErrUnexpectedEOF {
			return storage.Attrs{}, rerr
		}
		// A short last part (ErrUnexpectedEOF) goes round once more, and
		// the next read ends the loop.
	}
	opts := putOptions(cond)
	for attempt := 0; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return storage.Attrs{}, err
		}
		info, err := s.core.CompleteMultipartUpload(ctx, s.bucket, obj, id, parts, opts)
		if conflict(err) && attempt < 5 {
			continue
		}
		if err != nil {
			return storage.Attrs{}, fmt.Errorf("put %s: completing: %w", key, putErr(err, cond))
		}
		return s.putAttrs(info, size), nil
	}
}

// Delete implements storage.Store. S3 answers a DELETE of a missing object
// with success, so Delete asks first, to return ErrNotFound as the contract
// says.
func (s *Store) Delete(ctx context.Context, key string) error {
	if !storage.ValidKey(key) {
		return keyErr(key)
	}
	if _, err := s.Stat(ctx, key); err != nil {
		return err
	}
	if err := s.core.RemoveObject(ctx, s.bucket, s.object(key), minio.RemoveObjectOptions{}); err != nil {
		return fmt.Errorf("delete %s: %w", key, mapErr(err))
	}
	return nil
}

// List implements storage.Store: S3 lists keys in ascending byte order.
func (s *Store) List(ctx context.Context, prefix string) iter.Seq2[string, error] {
	return func(yield func(string, error) bool) {
		if !storage.ValidPrefix(prefix) {
			yield("", fmt.Errorf("%w: prefix %q", storage.ErrInvalidKey, prefix))
			return
		}
		ctx, cancel := context.WithCancel(ctx)
		defer cancel() // stops the lister when the caller stops early
		for obj := range s.core.Client.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Prefix: s.prefix + prefix, Recursive: true}) {
			if obj.Err != nil {
				yield("", fmt.Errorf("list %s: %w", prefix, mapErr(obj.Err)))
				return
			}
			key, ok := strings.CutPrefix(obj.Key, s.prefix)
			if !ok || !storage.ValidKey(key) {
				continue // not one of ours
			}
			if !yield(key, nil) {
				return
			}
		}
		if err := ctx.Err(); err != nil {
			yield("", err)
		}
	}
}

// Leftovers returns the multipart uploads under the store's prefix that
// were neither completed nor aborted: a failed Put must leave none.
func (s *Store) Leftovers() ([]string, error) {
	var left []string
	for u := range s.core.Client.ListIncompleteUploads(context.Background(), s.bucket, s.prefix, true) {
		if u.Err != nil {
			return left, u.Err
		}
		left = append(left, u.Key+" (upload "+u.UploadID+")")
	}
	return left, nil
}
