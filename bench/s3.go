package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"

	"github.com/imagestore/imagestore/storage/s3store/miniotest"
)

// The S3 workloads run the main workloads on a second server whose store
// is a bucket of a MinIO server on loopback, each run beside the same
// workload on the shared server's data folder, alternately, as the other
// comparisons do. The S3 side's CPU and memory are those of both
// processes, imagestore and MinIO: the bucket's server is part of the
// cost of serving from it.
const (
	refFileStore = "imagestore, file store"
	s3Target     = "imagestore, S3 store (MinIO)"
	s3ListImages = 1000
)

func (b *bench) s3Workloads() []workload {
	s3 := []string{"wrk", "minio"}
	return []workload{
		{"s3-get-100k-gzip", s3, true, func(ctx context.Context) error { return b.s3Get(ctx, "s3-get-100k-gzip", true) }},
		{"s3-get-100k-plain", s3, true, func(ctx context.Context) error { return b.s3Get(ctx, "s3-get-100k-plain", false) }},
		{"s3-upload-100k", []string{"minio"}, true, b.s3Uploads},
		{"s3-list-1k", []string{"minio"}, true, b.s3Lists},
	}
}

// startS3 starts MinIO, a bucket in it, and an imagestore server on that
// bucket, once.
func (b *bench) startS3(ctx context.Context) error {
	if b.s3srv != nil {
		return nil
	}
	m, err := miniotest.Start(filepath.Join(b.tmp, "minio"))
	if err != nil {
		return err
	}
	b.minio = m
	bucket, err := m.NewBucket(ctx)
	if err != nil {
		return err
	}
	flags := append([]string{"--store", "s3://" + bucket + "/bench?path-style=true"}, b.opts.serverFlags...)
	b.s3srv, err = startServer(ctx, b.bin, filepath.Join(b.tmp, "data-s3-unused"), filepath.Join(b.tmp, "server-s3.log"), flags, b.opts.profileDir != "", m.Env()...)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "MinIO pid %d at %s; S3-backed server pid %d at %s\n", m.PID(), m.Endpoint, b.s3srv.pid(), b.s3srv.base)
	return nil
}

func (b *bench) stopS3() {
	if b.s3srv != nil {
		b.s3srv.kill()
	}
	if b.minio != nil {
		b.minio.Stop()
	}
}

// s3Measure turns a run on either server into a measurement: the S3 side
// as the measured target, the file store as its reference.
func (b *bench) s3Measure(ctx context.Context, srv *server, workload string, rep int, run func(ctx context.Context) (*result, error)) (*result, error) {
	pids := []int{srv.pid()}
	target := refFileStore
	if srv == b.s3srv {
		pids = append(pids, b.minio.PID())
		target = s3Target
	}
	u := measure(pids, true)
	r, err := run(ctx)
	cpu, rss := u.stop()
	if err != nil {
		return nil, err
	}
	if err := srv.alive(); err != nil {
		return nil, err
	}
	r.Workload, r.Target = workload, target
	r.CPUPercent, r.PeakRSS = cpu, rss
	return r, nil
}

func (b *bench) s3Get(ctx context.Context, workload string, gz bool) error {
	if err := b.startS3(ctx); err != nil {
		return err
	}
	var headers []string
	if gz {
		headers = []string{"Accept-Encoding: gzip"}
	}
	url := map[*server]string{}
	for _, srv := range []*server{b.s3srv, b.srv} {
		b.users++
		token, err := srv.newUser(ctx, fmt.Sprintf("s3get_%d", b.users))
		if err != nil {
			return err
		}
		id, err := srv.upload(ctx, token, "photo.jpg", "image/jpeg", b.fx.photo)
		if err != nil {
			return err
		}
		url[srv] = srv.seedURL("token/%s/get-image/%s/", token, id)
		if _, err := checkGet(ctx, url[srv], headers, b.fx.photo); err != nil {
			return fmt.Errorf("%s: %w", srv.base, err)
		}
	}
	for _, c := range b.opts.concs {
		on := func(srv *server) measurement {
			return func(ctx context.Context, rep int) (*result, error) {
				return b.s3Measure(ctx, srv, workload, rep, func(ctx context.Context) (*result, error) {
					w, err := runWrk(ctx, wrkRun{url: url[srv], headers: headers, conc: c, duration: b.opts.duration})
					if err != nil {
						return nil, err
					}
					return fromWrk(workload, "", c, b.opts.duration, w), nil
				})
			}
		}
		if err := b.compare(ctx, on(b.s3srv), on(b.srv)); err != nil {
			return err
		}
	}
	return nil
}

func (b *bench) s3Uploads(ctx context.Context) error {
	if err := b.startS3(ctx); err != nil {
		return err
	}
	for _, c := range b.opts.concs {
		on := func(srv *server) measurement {
			return func(ctx context.Context, rep int) (*result, error) {
				b.users++
				token, err := srv.newUser(ctx, fmt.Sprintf("s3up_%d", b.users))
				if err != nil {
					return nil, err
				}
				url := srv.seedURL("token/%s/upload-image/", token)
				return b.s3Measure(ctx, srv, "s3-upload-100k", rep, func(ctx context.Context) (*result, error) {
					st, report, err := runLoad(ctx, loadSpec{name: fmt.Sprintf("s3-upload-100k c=%d", c), conc: c, duration: b.opts.duration, run: rep + 1,
						sameAddress: b.opts.sameAddress, noProfile: true,
						next: func(w, i int) (*call, bool) {
							parts, ct := multipartBody(fmt.Sprintf("u-%d-%d.jpg", w, i), "image/jpeg", b.fx.photo)
							return &call{method: http.MethodPost, url: url, body: parts, want: http.StatusCreated,
								header: http.Header{"Content-Type": {ct}}}, true
						}})
					if err != nil {
						return nil, err
					}
					if st.errors > 0 {
						return nil, fmt.Errorf("%d uploads failed; first: %s", st.errors, report.first())
					}
					return fromLoad("", "", "go", c, st), nil
				})
			}
		}
		if err := b.compare(ctx, on(b.s3srv), on(b.srv)); err != nil {
			return err
		}
	}
	return nil
}

func (b *bench) s3Lists(ctx context.Context) error {
	if err := b.startS3(ctx); err != nil {
		return err
	}
	url := map[*server]string{}
	for _, srv := range []*server{b.s3srv, b.srv} {
		b.users++
		token, err := srv.newUser(ctx, fmt.Sprintf("s3list_%d", b.users))
		if err != nil {
			return err
		}
		if _, _, err := b.seedImages(ctx, srv, "s3-seed-1k", []string{token}, s3ListImages, 16, false, func(i int) (string, []byte) {
			return fmt.Sprintf("l-%d.png", i), randomSetPNG(i)
		}); err != nil {
			return err
		}
		url[srv] = srv.seedURL("token/%s/get-image-list/", token)
	}
	for _, c := range b.opts.concs {
		on := func(srv *server) measurement {
			return func(ctx context.Context, rep int) (*result, error) {
				return b.s3Measure(ctx, srv, "s3-list-1k", rep, func(ctx context.Context) (*result, error) {
					st, _, err := runLoad(ctx, loadSpec{name: fmt.Sprintf("s3-list-1k c=%d", c), conc: c, duration: b.opts.duration,
						run: rep + 1, sameAddress: b.opts.sameAddress, noProfile: true,
						next: func(w, i int) (*call, bool) {
							return &call{method: http.MethodGet, url: url[srv], want: http.StatusOK}, true
						}})
					if err != nil {
						return nil, err
					}
					return fromLoad("", "", "go", c, st), nil
				})
			}
		}
		if err := b.compare(ctx, on(b.s3srv), on(b.srv)); err != nil {
			return err
		}
	}
	return nil
}
