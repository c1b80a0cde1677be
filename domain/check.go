package domain

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/klauspost/compress/gzip"

	"github.com/imagestore/imagestore/storage"
)

// CheckReport is what Check found, and what it repaired.
type CheckReport struct {
	Users, Images int
	// Damaged lists images whose bytes no longer match their SHA-256 or
	// length, or do not decompress: they cannot be repaired.
	Damaged []string
	// Missing lists images listed without their bytes.
	Missing []string
	// Orphans lists stored blobs that no image names, and variants of
	// blobs that no image names.
	Orphans []string
	// StaleTokens lists token records that no user holds any more.
	StaleTokens []string
	// Repaired counts the findings that were repaired.
	Repaired int
}

// Problems is the number of findings.
func (r CheckReport) Problems() int {
	return len(r.Damaged) + len(r.Missing) + len(r.Orphans) + len(r.StaleTokens)
}

// Check verifies the whole store: every image's bytes against its recorded
// SHA-256 and length, images listed without bytes, blobs that no image names,
// variants of such blobs, and token records no user holds. With repair it
// removes what can safely go: orphan blobs and variants, stale token
// records, and the list entries of images whose bytes are gone (they
// cannot be served anyway) with their variants. Damaged images are
// only reported. It must run while no server uses the store (orphans would
// include uploads in progress); the file store's lock ensures that.
func (s *Service) Check(ctx context.Context, repair bool, progress func(done int)) (CheckReport, error) {
	var rep CheckReport
	named := map[string]bool{} // blob keys named by an index
	tokens := map[string]bool{}
	for key, err := range s.store.List(ctx, "users/") {
		if err != nil {
			return rep, err
		}
		var u User
		if _, err := s.getJSON(ctx, key, &u); err != nil {
			return rep, err
		}
		rep.Users++
		tokens[tokenKey(u.Token)] = true
		uh := userHashOf(u.Name)
		ix, _, err := s.loadIndex(ctx, uh)
		if err != nil {
			return rep, err
		}
		var missing []string
		for _, img := range ix.Images {
			rep.Images++
			what := u.Name + "/" + img.ID + " (" + img.Name + ")"
			named[blobKey(uh, img.Blob)] = true
			switch err := s.verifyBlob(ctx, uh, img); {
			case errors.Is(err, storage.ErrNotFound):
				rep.Missing = append(rep.Missing, what)
				missing = append(missing, img.ID)
			case err != nil:
				rep.Damaged = append(rep.Damaged, what+": "+err.Error())
			}
			if progress != nil {
				progress(rep.Images)
			}
		}
		if repair && len(missing) > 0 {
			err := s.updateIndex(ctx, uh, func(ix *index) error {
				for i := len(ix.Images) - 1; i >= 0; i-- {
					if slices.Contains(missing, ix.Images[i].ID) {
						ix.remove(i)
					}
				}
				return nil
			})
			if err != nil {
				return rep, err
			}
			for _, img := range ix.Images {
				if slices.Contains(missing, img.ID) {
					s.deleteVariants(ctx, uh, img.Blob)
				}
			}
			rep.Repaired += len(missing)
		}
	}
	for key, err := range s.store.List(ctx, "blobs/") {
		if err != nil {
			return rep, err
		}
		if named[key] || !strings.HasSuffix(key, ".gz") {
			continue
		}
		rep.Orphans = append(rep.Orphans, key)
		if repair {
			if err := s.store.Delete(ctx, key); err != nil && !errors.Is(err, storage.ErrNotFound) {
				return rep, err
			}
			rep.Repaired++
		}
	}
	// Variants of blobs no image names (those of the orphans just removed
	// among them).
	if err := s.checkVariants(ctx, named, repair, &rep); err != nil {
		return rep, err
	}
	for key, err := range s.store.List(ctx, "tokens/") {
		if err != nil {
			return rep, err
		}
		if tokens[key] {
			continue
		}
		rep.StaleTokens = append(rep.StaleTokens, key)
		if repair {
			if err := s.store.Delete(ctx, key); err != nil && !errors.Is(err, storage.ErrNotFound) {
				return rep, err
			}
			rep.Repaired++
		}
	}
	return rep, nil
}

// verifyBlob reads an image's blob through gzip (whose own checksum is
// checked too) and compares length and SHA-256 with the record.
func (s *Service) verifyBlob(ctx context.Context, uh string, img Image) error {
	rc, _, err := s.store.Get(ctx, blobKey(uh, img.Blob))
	if err != nil {
		return err
	}
	defer rc.Close()
	zr, err := gzip.NewReader(rc)
	if err != nil {
		return fmt.Errorf("not gzip: %v", err)
	}
	h := sha256.New()
	n, err := io.Copy(h, zr)
	if err != nil {
		return fmt.Errorf("unreadable: %v", err)
	}
	if n != img.Size {
		return fmt.Errorf("%d bytes, %d recorded", n, img.Size)
	}
	if sum := hex.EncodeToString(h.Sum(nil)); sum != img.SHA256 {
		return fmt.Errorf("SHA-256 %s, %s recorded", sum, img.SHA256)
	}
	return nil
}
