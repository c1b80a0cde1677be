package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/imagestore/imagestore/client"
)

// imageExtensions are the extensions of the formats the server accepts:
// in a folder, upload takes only files with one of them (unless --all).
var imageExtensions = map[string]bool{
	".jpg": true, ".jpeg": true, ".jpe": true, ".jfif": true,
	".png": true, ".gif": true, ".bmp": true, ".dib": true,
	".tif": true, ".tiff": true, ".webp": true,
	".pbm": true, ".pgm": true, ".ppm": true, ".pnm": true,
	".ras": true, ".sun": true, ".xbm": true,
	".sgi": true, ".rgb": true, ".rgba": true, ".bw": true,
	".exr": true,
}

// uploadFile is a file to upload.
type uploadFile struct {
	path string
	size int64
}

func (e *env) upload(ctx context.Context, args []string) int {
	fs := e.flagSet("upload", helpText(`Usage: imagestore-cli upload FILE|FOLDER... [--jobs N] [--all] [--idempotent] [--json]

Uploads each FILE, and the files in each FOLDER and the folders in it.
In folders, only files whose extension is an image's (.jpg, .png, .gif,
.webp, .tif, .bmp...) are taken, and hidden files and folders (.name) are
skipped, unless --all. Each image is stored under its file name, without
its folder, and a user's names are unique: of two files with the same name
(in different folders) the second fails with exit code 5, unless
--idempotent is given and they hold the same bytes.

Prints a line per file on standard output, "ID<tab>FILE" (with --json, a
JSON object per line: "file" and the image's fields, and "replayed"), and
failures and a summary on standard error, with a progress bar when it is a
terminal. The exit code is not 0 if any file failed.

--idempotent sends each upload with an Idempotency-Key derived from the
file's SHA-256 and name: running the same command again after a failure
(within 24 hours) uploads only what is missing, and a file an earlier
--idempotent run uploaded counts as done ("already uploaded") rather than
as a conflict.
`))
	jobs := fs.Int("jobs", 4, "upload `N` files at once")
	all := fs.Bool("all", false, "in folders, take every file, hidden ones and any extension")
	idempotent := fs.Bool("idempotent", false, "send an Idempotency-Key, so that a re-run never stores a file twice")
	asJSON := fs.Bool("json", false, "print a JSON object per uploaded file")
	pos, code, ok := e.parse(fs, args)
	if !ok {
		return code
	}
	if code, ok := e.needArgs(fs, pos, 1, -1, "at least one FILE or FOLDER"); !ok {
		return code
	}
	if *jobs < 1 {
		return e.usageError(fs.Name(), "--jobs must be at least 1")
	}
	c, code, ok := e.client(fs, true)
	if !ok {
		return code
	}

	u := &uploader{env: e, c: c, idempotent: *idempotent, asJSON: *asJSON,
		p: &progress{w: e.stderr, bar: isTerminal(e.stderr)}}
	files, skipped := u.collect(pos, *all)
	u.p.totalFiles = len(files)
	for _, f := range files {
		u.p.totalBytes += f.size
	}
	stopBar := u.p.run()

	work := make(chan uploadFile)
	var wg sync.WaitGroup
	for range min(*jobs, len(files)) {
		wg.Go(func() {
			for f := range work {
				u.one(ctx, f)
			}
		})
	}
	started := 0
feed:
	for _, f := range files {
		select {
		case work <- f:
			started++
		case <-ctx.Done():
			break feed
		}
	}
	close(work)
	wg.Wait()
	stopBar()

	// The summary.
	var parts []string
	parts = append(parts, fmt.Sprintf("%d uploaded (%s)", u.uploaded, humanSize(u.uploadedBytes)))
	if u.replayed > 0 {
		parts = append(parts, fmt.Sprintf("%d already uploaded", u.replayed))
	}
	if len(u.codes) > 0 {
		parts = append(parts, fmt.Sprintf("%d failed", len(u.codes)))
	}
	if skipped > 0 {
		parts = append(parts, fmt.Sprintf("%d skipped (not images by their extension, or hidden; --all takes them)", skipped))
	}
	if started < len(files) {
		parts = append(parts, fmt.Sprintf("%d not attempted (interrupted)", len(files)-started))
		u.codes = append(u.codes, exitFailed)
	}
	fmt.Fprintln(e.stderr, strings.Join(parts, ", "))
	return combine(u.codes)
}

// uploader uploads files and keeps count.
type uploader struct {
	*env
	c          *client.Client
	idempotent bool
	asJSON     bool
	p          *progress

	mu            sync.Mutex // guards what follows
	uploaded      int
	uploadedBytes int64
	replayed      int
	codes         []int // the exit code of each failure
}

// failed reports that what failed with err.
func (u *uploader) failed(what string, err error) {
	u.mu.Lock()
	u.codes = append(u.codes, exitCode(err))
	u.mu.Unlock()
	u.p.println(u.stderr, "imagestore-cli: "+describe(what, err))
}

// collect returns the files to upload among paths, and how many files of
// the folders it skipped. It reports those it cannot read as failures.
func (u *uploader) collect(paths []string, all bool) (files []uploadFile, skipped int) {
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			u.failed("", err)
			continue
		}
		if !st.IsDir() {
			if !st.Mode().IsRegular() {
				u.failed("", fmt.Errorf("%s is not a regular file", p))
				continue
			}
			files = append(files, uploadFile{p, st.Size()})
			continue
		}
		filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				u.failed("", err)
				return nil
			}
			hidden := path != p && strings.HasPrefix(d.Name(), ".")
			if d.IsDir() {
				if hidden && !all {
					return filepath.SkipDir
				}
				return nil
			}
			if !all && (hidden || !imageExtensions[strings.ToLower(filepath.Ext(path))]) {
				skipped++
				return nil
			}
			st, err := os.Stat(path) // following a symbolic link
			if err != nil {
				u.failed("", err)
				return nil
			}
			if !st.Mode().IsRegular() {
				skipped++
				return nil
			}
			files = append(files, uploadFile{path, st.Size()})
			return nil
		})
	}
	return files, skipped
}

// one uploads the file f and reports how it went.
func (u *uploader) one(ctx context.Context, f uploadFile) {
	var sent atomic.Int64
	res, what, err := u.send(ctx, f, &sent)
	u.p.fileDone(f.size - sent.Swap(f.size))
	if err != nil {
		u.failed(what, err)
		return
	}
	u.mu.Lock()
	if res.Replayed {
		u.replayed++
	} else {
		u.uploaded++
		u.uploadedBytes += res.Size
	}
	u.mu.Unlock()
	if u.asJSON {
		b, _ := json.Marshal(struct {
			File string `json:"file"`
			client.UploadResult
		}{f.path, res})
		u.p.println(u.stdout, string(b))
		return
	}
	line := res.ID + "\t" + printable(f.path)
	if res.Replayed {
		line += "\t(already uploaded)"
	}
	u.p.println(u.stdout, line)
}

// send uploads the file f, counting the bytes sent in sent. If it fails,
// what says what failed, for the message ("" when err names the file).
func (u *uploader) send(ctx context.Context, f uploadFile, sent *atomic.Int64) (res client.UploadResult, what string, err error) {
	fh, err := os.Open(f.path)
	if err != nil {
		return res, "", err
	}
	defer fh.Close()
	st, err := fh.Stat()
	if err != nil {
		return res, "", err
	}
	name := filepath.Base(f.path)
	opts := &client.UploadOptions{Progress: func(n, _ int64) { u.p.bytes.Add(n - sent.Swap(n)) }}
	if u.idempotent {
		h := sha256.New()
		if _, err := io.Copy(h, fh); err != nil {
			return res, "", err
		}
		opts.IdempotencyKey = idempotencyKey(name, h.Sum(nil))
	}
	for attempt := 1; ; attempt++ {
		if _, err := fh.Seek(0, io.SeekStart); err != nil {
			return res, "", err
		}
		res, err = u.c.Upload(ctx, name, fh, st.Size(), opts)
		// The same file twice (in two folders) is the same key: the second
		// waits for the first's answer, which it then gets too.
		var ce *client.Error
		if attempt == 5 || !errors.As(err, &ce) || ce.Type != "urn:imagestore:problem:idempotency-in-progress" {
			return res, f.path, err
		}
		select {
		case <-ctx.Done():
			return res, f.path, ctx.Err()
		case <-time.After(time.Duration(attempt) * 200 * time.Millisecond):
		}
	}
}

// idempotencyKey is the Idempotency-Key of the upload of the bytes whose
// SHA-256 is sum under name: the same file under the same name always has
// the same key, and anything else another.
func idempotencyKey(name string, sum []byte) string {
	k := sha256.Sum256([]byte(name + "\x00" + hex.EncodeToString(sum)))
	return "imagestore-cli-1-" + hex.EncodeToString(k[:])
}

// progress shows how far the upload is: a bar on a terminal, redrawn
// below the lines printed meanwhile.
type progress struct {
	w          io.Writer // standard error
	bar        bool
	totalFiles int
	totalBytes int64
	bytes      atomic.Int64 // sent so far

	mu        sync.Mutex // guards what follows, and the writes
	doneFiles int
	drawn     bool
}

// run redraws the bar until the returned function is called, which
// clears it.
func (p *progress) run() (stop func()) {
	if !p.bar {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			p.mu.Lock()
			p.draw()
			p.mu.Unlock()
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	})
	return func() {
		close(done)
		wg.Wait()
		p.mu.Lock()
		p.clear()
		p.mu.Unlock()
	}
}

// fileDone counts a file as done, adding what it did not send.
func (p *progress) fileDone(rest int64) {
	p.bytes.Add(rest)
	p.mu.Lock()
	p.doneFiles++
	p.mu.Unlock()
}

// println writes a line to w, around the bar.
func (p *progress) println(w io.Writer, line string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	redraw := p.drawn
	p.clear()
	fmt.Fprintln(w, line)
	if redraw {
		p.draw()
	}
}

func (p *progress) draw() {
	if p.bar {
		fmt.Fprint(p.w, "\r"+renderBar(30, p.doneFiles, p.totalFiles, p.bytes.Load(), p.totalBytes)+"\x1b[K")
		p.drawn = true
	}
}

func (p *progress) clear() {
	if p.drawn {
		fmt.Fprint(p.w, "\r\x1b[K")
		p.drawn = false
	}
}

// renderBar is the progress bar, width characters wide between brackets.
func renderBar(width, files, totalFiles int, bytes, totalBytes int64) string {
	frac := 1.0
	if totalBytes > 0 {
		frac = min(max(float64(bytes)/float64(totalBytes), 0), 1)
	}
	n := int(frac * float64(width))
	return fmt.Sprintf("[%s%s] %3d%%  %d/%d files  %s / %s", strings.Repeat("#", n), strings.Repeat(" ", width-n),
		int(frac*100), files, totalFiles, humanSize(min(max(bytes, 0), totalBytes)), humanSize(totalBytes))
}
