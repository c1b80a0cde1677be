package domain

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"time"

	"github.com/imagestore/imagestore/storage"
)

// MaxIdempotencyKeyLen bounds an idempotency key.
const MaxIdempotencyKeyLen = 255

// idempotencyStale is how long a claimed key may stay unfinished before a
// retry may take it over: the first request must have died with its
// process.
const idempotencyStale = 10 * time.Minute

// idempotencyRecord remembers what the first request with a key produced.
type idempotencyRecord struct {
	Done    bool      `json:"done"`
	Started time.Time `json:"started"`
	Image   Image     `json:"image,omitzero"`
	// Name and SHA256 fingerprint the request, so that a key reused for
	// another upload is refused rather than answered with the first.
	Name   string `json:"name,omitempty"`
	SHA256 string `json:"sha256,omitempty"`
}

// IdempotencyKeep is how long the result of an idempotent upload is kept
// for retries.
const IdempotencyKeep = 24 * time.Hour

func idempotencyKeyOf(userHash, key string) string {
	return "idem/" + userHash + "/" + hashKey("idempotency", key) + ".json"
}

func validIdempotencyKey(key string) bool {
	if key == "" || len(key) > MaxIdempotencyKeyLen {
		return false
	}
	for i := 0; i < len(key); i++ {
		if key[i] < 0x21 || key[i] > 0x7e {
			return false
		}
	}
	return true
}

// UploadOnce is Upload with an idempotency key: the first request with a
// key uploads; a retry with the same key (after a lost answer, say) stores
// nothing and returns the first result, with replayed set. A retry while the
// first is still in progress gets ErrIdempotencyInProgress.
func (s *Service) UploadOnce(ctx context.Context, u User, key, name string, r io.Reader) (img Image, replayed bool, err error) {
	if !validIdempotencyKey(key) {
		return Image{}, false, ErrIdempotencyKey
	}
	rkey := idempotencyKeyOf(userHashOf(u.Name), key)
	claim := storage.Cond{IfAbsent: true}
	for {
		var rec idempotencyRecord
		etag, err := s.getJSON(ctx, rkey, &rec)
		switch {
		case err == nil && rec.Done:
			name, _ := CleanName(name)
			h := sha256.New()
			if _, err := io.Copy(h, s.uploadReader(r)); err != nil { // hashed as it was stored
				return Image{}, false, err
			}
			if name != rec.Name || hex.EncodeToString(h.Sum(nil)) != rec.SHA256 {
				return Image{}, false, ErrIdempotencyMismatch
			}
			return rec.Image, true, nil
		case err == nil && s.now().Sub(rec.Started) < idempotencyStale:
			return Image{}, false, ErrIdempotencyInProgress
		case err == nil:
			claim = storage.Cond{IfMatch: etag} // take over a dead request's claim
		case !errors.Is(err, storage.ErrNotFound):
			return Image{}, false, err
		}
		err = s.putJSON(ctx, rkey, idempotencyRecord{Started: s.now().UTC()}, claim)
		if errors.Is(err, storage.ErrPrecondition) {
			claim = storage.Cond{IfAbsent: true}
			continue // someone else claimed it first: see what they did
		}
		if err != nil {
			return Image{}, false, err
		}
		break
	}
	img, err = s.Upload(ctx, u, name, r)
	if err != nil {
		// Free the key: a retry may do better (another name, a whole file).
		s.store.Delete(context.WithoutCancel(ctx), rkey)
		return Image{}, false, err
	}
	done := idempotencyRecord{Done: true, Started: s.now().UTC(), Image: img, Name: img.Name, SHA256: img.SHA256}
	if err := s.putJSON(context.WithoutCancel(ctx), rkey, done, storage.Cond{}); err != nil {
		s.log.Warn("could not record an idempotent upload's result", "err", err)
	}
	return img, false, nil
}

// SweepIdempotency removes the records of idempotent uploads older than
// IdempotencyKeep, and claims abandoned for as long. It returns how many it
// removed.
func (s *Service) SweepIdempotency(ctx context.Context) (int, error) {
	removed := 0
	for key, err := range s.store.List(ctx, "idem/") {
		if err != nil {
			return removed, err
		}
		var rec idempotencyRecord
		if _, err := s.getJSON(ctx, key, &rec); err != nil {
			continue
		}
		if s.now().Sub(rec.Started) > IdempotencyKeep {
			if err := s.store.Delete(ctx, key); err == nil {
				removed++
			}
		}
	}
	return removed, nil
}
