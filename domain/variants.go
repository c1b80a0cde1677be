package domain

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/imagestore/imagestore/storage"
)

// Variants: a resized, and possibly re-encoded, copy of a user's image,
// made on first demand and kept in the store, so that the next request for
// the same variant of the same image is a read. See OpenVariant.
//
// A variant is stored raw (not gzip-compressed like images): JPEG and PNG
// are compressed already, so gzip would gain nothing and cost a compression
// on every write and a decompression on every read; stored as it is, a
// variant is sent straight from the store (sendfile on a data folder) with
// its length known beforehand. Its key is made of the program's own values
// only: the user's hash, the blob's random name, and the parameters once
// validated and resolved (numbers, and names from a fixed list):
//
//	variants/<H(username)>/<blob>.<w>x<h>-<fit>.<format>
//
// for instance variants/3f…9a/0c…e1.640x0-contain.jpeg (0 for a side not
// asked for). A replacement writes a new blob, so the variants of the old
// content are never served for the new one; when a blob is removed (a
// deletion, a replacement, the orphan sweep, check --repair), its variants
// go with it. They all sit in one folder per user rather than in one per
// blob: a data folder's store cannot remove the folders it empties, and a
// folder per deleted image would be left behind forever.

// DefaultMaxVariantSize is the default of Config.MaxVariantSize.
const DefaultMaxVariantSize = 2048

// maxVariantsPerImage bounds the variants of one image kept in the store:
// more are still made and served, but not kept, so that a client asking
// for every size in turn cannot fill the disk.
const maxVariantsPerImage = 32

// Fit says how a variant fills the box of its width and height.
type Fit string

// The fits. When only one of width and height is given, every fit keeps
// the image's proportions.
const (
	// FitContain fits the whole image inside the box, keeping its
	// proportions: the variant is as large as the box in one direction.
	FitContain Fit = "contain"
	// FitCover fills the whole box, keeping the proportions: the image is
	// scaled to cover it and its middle cut out.
	FitCover Fit = "cover"
	// FitFill stretches the image to the box.
	FitFill Fit = "fill"
)

// ParseFit returns the fit of that name.
func ParseFit(s string) (Fit, bool) {
	switch f := Fit(s); f {
	case FitContain, FitCover, FitFill:
		return f, true
	}
	return "", false
}

// VariantFormats are the formats variants are encoded in: the names of
// imagetype's formats.
var VariantFormats = []string{"jpeg", "png"}

var (
	// ErrVariantFormat refuses a variant in a format this server has no
	// encoder for: WebP (there is no pure-Go WebP encoder among its
	// dependencies).
	ErrVariantFormat = errors.New("no WebP encoder is available: variants are JPEG or PNG")
	// ErrVariantUnavailable means that no variant can be made of the image
	// itself (a format that cannot be decoded, an image its decoder
	// refuses, more pixels than the limit): see VariantUnavailableError.
	ErrVariantUnavailable = errors.New("no variant can be made of this image")
)

// VariantUnavailableError says why no variant can be made of an image. It
// matches ErrVariantUnavailable.
type VariantUnavailableError struct {
	Reason string
}

func (e *VariantUnavailableError) Error() string {
	return ErrVariantUnavailable.Error() + ": " + e.Reason
}

// Is makes the error match ErrVariantUnavailable.
func (e *VariantUnavailableError) Is(target error) bool { return target == ErrVariantUnavailable }

// VariantParams describes a variant.
type VariantParams struct {
	// Width and Height bound the variant, in pixels; 0 leaves a side free.
	// At least one is set, and neither is more than Config.MaxVariantSize.
	Width, Height int
	// Fit is how the image fills the box; "" means FitContain.
	Fit Fit
	// Format is "jpeg" or "png"; "" means the image's own format if it is
	// one of these, PNG otherwise (a GIF gives its first frame).
	Format string
}

// Tag names the variant among those of one image: "<w>x<h>-<fit>.<format>",
// such as "640x0-contain.jpeg". It is part of the variant's key and ETag.
func (p VariantParams) Tag() string {
	return strconv.Itoa(p.Width) + "x" + strconv.Itoa(p.Height) + "-" + string(p.Fit) + "." + p.Format
}

// MIME is the media type of the variant's format.
func (p VariantParams) MIME() string {
	if p.Format == "jpeg" {
		return "image/jpeg"
	}
	return "image/png"
}

// ResolveVariant checks p against the limits and completes it for img:
// the default fit and format chosen, the fit made "contain" when only one
// side is given (every fit is the same then, and so is the variant). It
// returns ErrVariantFormat for a WebP variant, a *VariantUnavailableError
// for an image no variant can be made of, and a plain error for
// parameters out of bounds (which the adapters refuse first).
func (s *Service) ResolveVariant(img Image, p VariantParams) (VariantParams, error) {
	maxSize := s.cfg.MaxVariantSize
	if p.Width < 0 || p.Height < 0 || p.Width > maxSize || p.Height > maxSize || p.Width == 0 && p.Height == 0 {
		return VariantParams{}, fmt.Errorf("variant of %dx%d: each side is at most %d pixels, and one at least is given", p.Width, p.Height, maxSize)
	}
	switch p.Fit {
	case "":
		p.Fit = FitContain
	case FitContain, FitCover, FitFill:
	default:
		return VariantParams{}, fmt.Errorf("variant fit %q is not contain, cover or fill", p.Fit)
	}
	if p.Width == 0 || p.Height == 0 {
		p.Fit = FitContain
	}
	switch p.Format {
	case "":
		p.Format = "png"
		if slices.Contains(VariantFormats, img.Type) {
			p.Format = img.Type
		}
	case "webp":
		return VariantParams{}, ErrVariantFormat
	default:
		if !slices.Contains(VariantFormats, p.Format) {
			return VariantParams{}, fmt.Errorf("variant format %q is not jpeg or png", p.Format)
		}
	}
	if _, ok := variantDecoders[img.Type]; !ok {
		return VariantParams{}, &VariantUnavailableError{Reason: fmt.Sprintf(
			"variants are made of JPEG, PNG, GIF, BMP, TIFF and WebP images; this one is %s", img.MIME())}
	}
	return p, nil
}

// Variant is a variant of an image, ready to be read.
type Variant struct {
	// Image is the image it was made from.
	Image Image
	// Params are the variant's parameters, resolved (see ResolveVariant).
	Params VariantParams
	// Size is the length of Body.
	Size int64
	// Body yields the variant's bytes; the caller closes it.
	Body io.ReadCloser
	// Cached says that it came from the store, not made for this request.
	Cached bool
}

// MIME is the variant's media type.
func (v Variant) MIME() string { return v.Params.MIME() }

// errBlobGone: an image's blob disappeared while a variant was being made
// of it (the image was replaced or deleted meanwhile).
var errBlobGone = errors.New("the image's blob is gone")

// OpenVariant returns a variant of the user's image id: from the store if
// it was made before, otherwise made now (decoded, resized, encoded) and
// kept. Errors: ErrImageNotFound, those of ResolveVariant, ErrDamaged for
// stored bytes that fail their checksum, or the store's. Requests for the
// same variant that arrive together make it once, and at most a few
// variants are made at a time (each holds a whole decoded image), of
// images over 16 megapixels one at a time.
func (s *Service) OpenVariant(ctx context.Context, u User, id string, p VariantParams) (Variant, error) {
	uh := userHashOf(u.Name)
	tried := ""
	for attempt := 0; ; attempt++ {
		img, err := s.Image(ctx, u, id)
		if err != nil {
			return Variant{}, err
		}
		rp, err := s.ResolveVariant(img, p)
		if err != nil {
			return Variant{}, err
		}
		key := variantKey(uh, img.Blob, rp)
		rc, attrs, err := s.store.Get(ctx, key)
		if err == nil {
			s.variants.hits.Add(1)
			return Variant{Image: img, Params: rp, Size: attrs.Size, Body: rc, Cached: true}, nil
		}
		if !errors.Is(err, storage.ErrNotFound) {
			return Variant{}, err
		}
		data, err := s.variants.once(ctx, key, func(ctx context.Context) ([]byte, error) {
			return s.makeVariant(ctx, uh, img, rp, key)
		})
		if errors.Is(err, errBlobGone) && img.Blob != tried && attempt < 100 {
			// Replaced since the list was read: look again, as long as
			// the list names a new blob.
			tried = img.Blob
			continue
		}
		if errors.Is(err, errBlobGone) {
			return Variant{}, fmt.Errorf("image %s: its blob is missing: %w", id, storage.ErrNotFound)
		}
		if err != nil {
			return Variant{}, err
		}
		return Variant{Image: img, Params: rp, Size: int64(len(data)), Body: io.NopCloser(bytes.NewReader(data))}, nil
	}
}

// makeVariant makes a variant of img and keeps it in the store under key.
func (s *Service) makeVariant(ctx context.Context, uh string, img Image, p VariantParams, key string) ([]byte, error) {
	release, err := s.variants.turn(ctx, img.Width*img.Height > largeVariantSource)
	if err != nil {
		return nil, err
	}
	defer release()
	start := time.Now()
	data, err := s.readOriginal(ctx, uh, img)
	if err == nil {
		data, err = renderVariant(data, img.Type, p, s.cfg.MaxPixels)
	}
	if err != nil {
		if !errors.Is(err, errBlobGone) && ctx.Err() == nil {
			s.variants.failures.Add(1)
			if !errors.Is(err, ErrVariantUnavailable) {
				s.log.Warn("could not make a variant", "image", img.ID, "variant", p.Tag(), "err", err)
			}
		}
		return nil, err
	}
	s.variants.misses.Add(1)
	s.variants.nanos.Add(int64(time.Since(start)))
	s.keepVariant(ctx, uh, img.Blob, key, data)
	return data, nil
}

// readOriginal returns the bytes of img as uploaded, from the cache of hot
// images if they are there.
func (s *Service) readOriginal(ctx context.Context, uh string, img Image) ([]byte, error) {
	if c := s.hot; c != nil {
		if data, ok := c.get(contentCacheKey(uh, img.Blob)); ok {
			return data, nil
		}
	}
	rc, _, err := s.store.Get(ctx, blobKey(uh, img.Blob))
	if errors.Is(err, storage.ErrNotFound) {
		return nil, errBlobGone
	}
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	data, err := gunzipAll(rc, img.Size)
	if err != nil {
		return nil, fmt.Errorf("image %s: %w: %w", img.ID, ErrDamaged, err)
	}
	return data, nil
}

// keepVariant stores a variant just made, unless the disk is below its
// reserve or the image has maxVariantsPerImage variants already. A
// concurrent request that stored it first (IfAbsent) is as good.
func (s *Service) keepVariant(ctx context.Context, uh, blob, key string, data []byte) {
	ctx = context.WithoutCancel(ctx)
	if s.checkRoom() != nil {
		return
	}
	n := 0
	for _, err := range s.store.List(ctx, variantPrefix(uh, blob)) {
		if err != nil {
			return
		}
		n++
	}
	if n >= maxVariantsPerImage {
		return
	}
	if _, err := s.store.Put(ctx, key, bytes.NewReader(data), storage.Cond{IfAbsent: true}); err != nil {
		if !errors.Is(err, storage.ErrPrecondition) {
			s.log.Warn("could not keep a variant", "key", key, "err", err)
		}
		return
	}
	// The image may have been replaced or deleted while the variant was
	// made, and its variants removed before this one was written: then
	// this one goes too.
	ix, _, err := s.loadIndex(ctx, uh)
	if err == nil && !slices.ContainsFunc(ix.Images, func(img Image) bool { return img.Blob == blob }) {
		s.store.Delete(ctx, key)
	}
}

// deleteVariants removes the variants of a blob, which is gone or going.
func (s *Service) deleteVariants(ctx context.Context, uh, blob string) {
	ctx = context.WithoutCancel(ctx)
	var keys []string
	for key, err := range s.store.List(ctx, variantPrefix(uh, blob)) {
		if err != nil {
			s.log.Warn("could not list the variants of a removed blob", "blob", blob, "err", err)
			break
		}
		keys = append(keys, key)
	}
	for _, key := range keys {
		if err := s.store.Delete(ctx, key); err != nil && !errors.Is(err, storage.ErrNotFound) {
			// Left for the orphan sweep.
			s.log.Warn("could not remove a variant of a removed blob", "key", key, "err", err)
		}
	}
}

// sweepVariants removes the variants written before the given time whose
// blob no list names: those left by a crash between the removal of a blob
// and of its variants, or written while their image was being replaced.
func (s *Service) sweepVariants(ctx context.Context, before time.Time) error {
	var curUser string
	var named map[string]bool
	for key, err := range s.store.List(ctx, "variants/") {
		if err != nil {
			return err
		}
		uh, blob, ok := parseVariantKey(key)
		if !ok {
			continue // not a key this package wrote
		}
		if uh != curUser {
			ix, _, err := s.loadIndex(ctx, uh)
			if err != nil {
				return err
			}
			curUser, named = uh, map[string]bool{}
			for _, img := range ix.Images {
				named[img.Blob] = true
			}
		}
		if named[blob] {
			continue
		}
		attrs, err := s.store.Stat(ctx, key)
		if errors.Is(err, storage.ErrNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		if !attrs.ModTime.Before(before) {
			continue
		}
		if ix, _, err := s.loadIndex(ctx, uh); err != nil || slices.ContainsFunc(ix.Images, func(img Image) bool { return img.Blob == blob }) {
			continue
		}
		if err := s.store.Delete(ctx, key); err != nil && !errors.Is(err, storage.ErrNotFound) {
			return err
		}
	}
	return nil
}

// checkVariants is Check's look at variants: those of a blob that no
// image names are orphans, removed by a repair.
func (s *Service) checkVariants(ctx context.Context, named map[string]bool, repair bool, rep *CheckReport) error {
	for key, err := range s.store.List(ctx, "variants/") {
		if err != nil {
			return err
		}
		uh, blob, ok := parseVariantKey(key)
		if ok && named[blobKey(uh, blob)] {
			continue
		}
		rep.Orphans = append(rep.Orphans, key)
		if repair {
			if err := s.store.Delete(ctx, key); err != nil && !errors.Is(err, storage.ErrNotFound) {
				return err
			}
			rep.Repaired++
		}
	}
	return nil
}

func variantPrefix(uh, blob string) string { return "variants/" + uh + "/" + blob + "." }

func variantKey(uh, blob string, p VariantParams) string { return variantPrefix(uh, blob) + p.Tag() }

// parseVariantKey returns the user hash and the blob of a variant's key.
func parseVariantKey(key string) (uh, blob string, ok bool) {
	uh, file, ok := strings.Cut(strings.TrimPrefix(key, "variants/"), "/")
	if !ok {
		return "", "", false
	}
	blob, _, ok = strings.Cut(file, ".")
	return uh, blob, ok && uh != "" && blob != ""
}

// VariantStats are the figures of variants.
type VariantStats struct {
	// Hits are variants served from the store; Misses variants made (and
	// kept); Failures requests for which no variant could be made (an
	// image that cannot be decoded, damaged, over the pixel limit).
	Hits, Misses, Failures int64
	// GenerationSeconds is the time spent making the Misses.
	GenerationSeconds float64
}

// VariantStats returns the figures of variants since the service began.
func (s *Service) VariantStats() VariantStats {
	v := s.variants
	return VariantStats{
		Hits: v.hits.Load(), Misses: v.misses.Load(), Failures: v.failures.Load(),
		GenerationSeconds: time.Duration(v.nanos.Load()).Seconds(),
	}
}

// largeVariantSource is the number of pixels above which an image is
// made variants of one at a time: decoded, such an image takes over 64 MiB
// (up to MaxPixels times 4 bytes), and several at once could exhaust the
// memory of a small server.
const largeVariantSource = 16 << 20

// variantState is what the variants of a Service share: turns to make
// them, the variants being made, and the counts.
type variantState struct {
	slots chan struct{} // a few variants are made at a time...
	large chan struct{} // ...and of them, one of a large image

	mu    sync.Mutex
	calls map[string]*variantCall // by key: variants being made

	hits, misses, failures, nanos atomic.Int64
}

var errVariantPanicked = errors.New("making the variant failed")

type variantCall struct {
	done chan struct{}
	data []byte
	err  error
}

func newVariantState(cpus int) *variantState {
	// Each variant being made may hold a whole decoded image (up to
	// MaxPixels pixels): a few at a time keep memory bounded, and are
	// as many as the CPUs can run anyway.
	return &variantState{
		slots: make(chan struct{}, min(cpus, 4)),
		large: make(chan struct{}, 1),
		calls: map[string]*variantCall{},
	}
}

// turn waits for a turn to make a variant, of a large image or not, and
// returns its release.
func (v *variantState) turn(ctx context.Context, large bool) (func(), error) {
	if large {
		select {
		case v.large <- struct{}{}:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	select {
	case v.slots <- struct{}{}:
		return func() {
			<-v.slots
			if large {
				<-v.large
			}
		}, nil
	case <-ctx.Done():
		if large {
			<-v.large
		}
		return nil, ctx.Err()
	}
}

// once runs fn for key, unless it is running already for another
// request: then it waits for that one's result.
func (v *variantState) once(ctx context.Context, key string, fn func(context.Context) ([]byte, error)) ([]byte, error) {
	for {
		v.mu.Lock()
		if c, ok := v.calls[key]; ok {
			v.mu.Unlock()
			select {
			case <-c.done:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			if c.err != nil && (errors.Is(c.err, context.Canceled) || errors.Is(c.err, context.DeadlineExceeded)) {
				continue // the request making it gave up, not this one: try again
			}
			return c.data, c.err
		}
		// Until fn returns, its outcome is a failure: a panic must not
		// hand the requests waiting for it an empty variant.
		c := &variantCall{done: make(chan struct{}), err: errVariantPanicked}
		v.calls[key] = c
		v.mu.Unlock()
		func() {
			defer func() {
				v.mu.Lock()
				delete(v.calls, key)
				v.mu.Unlock()
				close(c.done)
			}()
			c.data, c.err = fn(ctx)
		}()
		return c.data, c.err
	}
}
