package domain

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/imagestore/imagestore/storage"
)

// A user's list of images on a store that is the process's alone (a data
// folder) is a base record and a log. Rewriting the whole list for each
// upload costs in proportion to its length: a user with 10,000 images
// would write 2.5 MB for each 100 KB image. So each write of a list there
// is a small log record instead, which holds what the write changed, under
// the next sequence number:
//
//	index/<user hash>.json                    {"log":true,"seq":B,"images":[...]}
//	indexlog/<user hash>/<seq, 16 hex>.json   {"put":[...],"del":[...]}
//
// The list is the base's images with the records B+1, B+2, ... applied in
// order. Every maxIndexLog records the whole list is written again as a
// new base (compaction), whose seq is one more than the last record it
// folds in (a number no record has), and the records below it are removed,
// oldest first. Records at or below the base's seq are leftovers of a
// compaction cut short, ignored and removed by the next one.
//
// A reader that read the previous base sees a gap, and reads again: at
// the new base's own number while the records folded in are all still
// there, or before the first record left, since the oldest record goes
// first. Records are created if absent, so a write never
// replaces another; the process is the store's only writer, and the writes
// of one user's list take turns (see updateIndex), so the next sequence
// number is always free.
//
// A base without "log" (a bucket's, written by servers that share it, or a
// data folder's from before the log) has no records: such a list is
// rewritten whole, and a data folder's first write rewrites it with "log",
// numbered above any record already there, so that a stray one (of a log
// whose list was since written whole) is never applied.

// maxIndexLog is how many log records a list may have before it is
// written whole again.
const maxIndexLog = 64

func indexLogPrefix(userHash string) string { return "indexlog/" + userHash + "/" }

func indexLogKey(userHash string, seq uint64) string {
	return fmt.Sprintf("indexlog/%s/%016x.json", userHash, seq)
}

// indexLogSeq returns the sequence number of a log record's key.
func indexLogSeq(key string) (uint64, bool) {
	i := strings.LastIndexByte(key, '/')
	name, ok := strings.CutSuffix(key[i+1:], ".json")
	if !ok || len(name) != 16 {
		return 0, false
	}
	seq, err := strconv.ParseUint(name, 16, 64)
	return seq, err == nil
}

// indexLogRecord is one write of a list: the ids of the images it removed,
// then the images it added (at the end, in order) or changed (in place).
type indexLogRecord struct {
	Del []string `json:"del,omitempty"`
	Put []Image  `json:"put,omitempty"`
}

func appendIndexLogJSON(b []byte, rec *indexLogRecord) []byte {
	b = append(b, `{"del":[`...)
	for i, id := range rec.Del {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, id)
	}
	b = append(b, `],"put":[`...)
	return appendImagesJSON(b, rec.Put)
}

// apply changes imgs as rec says, and returns them. If added is not nil,
// the ids of the images rec adds are put in it.
func (rec *indexLogRecord) apply(imgs []Image, added map[string]bool) []Image {
	if len(rec.Del) > 0 {
		imgs = slices.DeleteFunc(imgs, func(img Image) bool { return slices.Contains(rec.Del, img.ID) })
	}
	if len(rec.Put) == 0 {
		return imgs
	}
	pos := make(map[string]int, len(imgs)) // each image's place, by id
	for i, img := range imgs {
		pos[img.ID] = i
	}
	for _, img := range rec.Put {
		if i, ok := pos[img.ID]; ok {
			imgs[i] = img
		} else {
			pos[img.ID] = len(imgs)
			imgs = append(imgs, img)
			if added != nil {
				added[img.ID] = true
			}
		}
	}
	return imgs
}

// errIndexLogGap is met by a reader that raced a compaction (or found a
// record missing).
var errIndexLogGap = errors.New("a record of the list's log is missing")

// readIndexLog applies to ix, read from a base whose seq is base, the log
// records after it, and returns the last one's sequence number (base if
// there are none). raced reports whether a write of the list ended since
// the read began.
func (s *Service) readIndexLog(ctx context.Context, uh string, base uint64, ix *index, raced func() bool) (uint64, error) {
	seqs, err := s.indexLogSeqs(ctx, uh)
	if err != nil {
		return 0, err
	}
	last := base
	added := map[string]bool{}
	for _, seq := range seqs {
		if seq <= base {
			continue // folded into the base already
		}
		if seq != last+1 {
			return 0, fmt.Errorf("%w: %s after %d", errIndexLogGap, indexLogKey(uh, seq), last)
		}
		var rec indexLogRecord
		if _, err := s.getJSON(ctx, indexLogKey(uh, seq), &rec); err != nil {
			if errors.Is(err, storage.ErrNotFound) {
				err = fmt.Errorf("%w: %s: %w", errIndexLogGap, indexLogKey(uh, seq), err)
			}
			return 0, err
		}
		ix.Images = rec.apply(ix.Images, added)
		last = seq
	}
	if len(added) > 0 && !s.cfg.KeepUnpublished {
		var again bool
		if ix.Images, again = s.dropUnpublished(ctx, uh, ix.Images, added, raced); again {
			// The missing bytes may be an image's old ones, removed
			// by a replacement or deletion written after the records
			// were listed: read again.
			return 0, fmt.Errorf("%w: a write raced the check of the images it added", errIndexLogGap)
		}
	}
	return last, nil
}

// dropUnpublished removes from imgs, a list just read with its log, the
// images the log added whose blob is missing: uploads whose record was
// durable when a crash came, but not their blob's name (see pendingBlob).
// None of them was acknowledged. An image replaced since it was added
// keeps its place: a replacement's blob is durable before its record. A
// blob that cannot be looked at (a failing disk) keeps its image, as an
// image whose bytes cannot be read. If bytes are missing and raced
// reports a write during the read, nothing is dropped and again is true:
// the caller must read again.
func (s *Service) dropUnpublished(ctx context.Context, uh string, imgs []Image, added map[string]bool, raced func() bool) (_ []Image, again bool) {
	var gone []string
	for _, img := range imgs {
		if !added[img.ID] {
			continue
		}
		_, err := s.store.Stat(ctx, blobKey(uh, img.Blob))
		if errors.Is(err, storage.ErrNotFound) {
			gone = append(gone, img.ID)
		} else if err != nil {
			s.log.Warn("could not look at an image's bytes; it stays listed", "user", uh, "id", img.ID, "err", err)
		}
	}
	if len(gone) == 0 {
		return imgs, false
	}
	if raced() {
		return imgs, true
	}
	s.log.Warn("images whose upload a crash cut short are left out of their list", "user", uh, "ids", gone)
	return slices.DeleteFunc(imgs, func(img Image) bool { return slices.Contains(gone, img.ID) }), false
}

// verifyIndexRecords makes each log record be checked against the list
// its batch made before it is written (tests set it).
var verifyIndexRecords = false

// indexLogSeqs returns the sequence numbers of the user's log records, in
// order.
func (s *Service) indexLogSeqs(ctx context.Context, uh string) ([]uint64, error) {
	var seqs []uint64
	for key, err := range s.store.List(ctx, indexLogPrefix(uh)) {
		if err != nil {
			return nil, err
		}
		if seq, ok := indexLogSeq(key); ok {
			seqs = append(seqs, seq)
		}
	}
	slices.Sort(seqs)
	return seqs, nil
}

// topIndexLogSeq returns the highest sequence number of the user's log
// records, 0 if there are none.
func (s *Service) topIndexLogSeq(ctx context.Context, uh string) (uint64, error) {
	seqs, err := s.indexLogSeqs(ctx, uh)
	if err != nil || len(seqs) == 0 {
		return 0, err
	}
	return seqs[len(seqs)-1], nil
}

// putIndexLog writes a log record, if no record has its sequence number,
// once ready returned nil. On a data folder, the record's bytes are
// synced while ready waits (for the blobs of uploads, synced at the same
// time: see pendingBlob).
func (s *Service) putIndexLog(ctx context.Context, uh string, seq uint64, rec *indexLogRecord, ready func() error) error {
	encode := func(b []byte) []byte { return appendIndexLogJSON(b, rec) }
	key := indexLogKey(uh, seq)
	if s.stager == nil {
		if err := ready(); err != nil {
			return err
		}
		_, err := s.putEncoded(ctx, key, storage.Cond{IfAbsent: true}, encode)
		return err
	}
	bp := encodeRecord(encode)
	defer releaseRecord(bp)
	st, err := s.stager.Stage(ctx, key, bytes.NewReader(*bp))
	if err != nil {
		return storeErr(err)
	}
	defer st.Close()
	if err := st.Sync(); err != nil {
		return storeErr(err)
	}
	if err := ready(); err != nil {
		return err
	}
	if _, err := st.Publish(ctx); err != nil {
		return storeErr(err)
	}
	return storeErr(s.stager.Flush(ctx, indexLogPrefix(uh)))
}

// pruneIndexLog removes the user's log records up to seq, which a base
// holds, oldest first (see the top of this file). A record it fails to
// remove is left for the next compaction.
func (s *Service) pruneIndexLog(ctx context.Context, uh string, seq uint64) {
	seqs, err := s.indexLogSeqs(ctx, uh)
	if err != nil {
		s.log.Warn("could not list a list's log records to remove them", "err", err)
		return
	}
	remove := s.store.Delete
	if s.stager != nil {
		// Their removal need not be durable: a record at or below the
		// base's seq is never applied, and a crash that brings one back
		// leaves it for the next compaction. Only the order matters.
		remove = s.stager.Unlink
	}
	for _, n := range seqs {
		if n > seq {
			break
		}
		if err := remove(ctx, indexLogKey(uh, n)); err != nil && !errors.Is(err, storage.ErrNotFound) {
			s.log.Warn("could not remove a list's log record; the next compaction will", "key", indexLogKey(uh, n), "err", err)
			return
		}
	}
}
