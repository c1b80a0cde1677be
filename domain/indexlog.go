package domain

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
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
// the next sequence number, appended to the log that follows the base:
//
//	index/<user hash>.json                   {"log":true,"seq":B,"images":[...]}
//	indexlog/<user hash>/<B, 16 hex>.log     records B+1, B+2, ... one after another
//
// Each record in the log is framed (see indexLogFrames): its length, a
// checksum (of the log's identity too) and its sequence number, then its
// JSON. An append is not atomic, so a reader stops at the first record
// that is not whole: one being appended, or one a crash cut short. No
// record after it was ever acknowledged, but the next one must not be
// appended after it, so a list whose log ends that way is written whole
// at its next write.
//
// The list is the base's images with the records B+1, B+2, ... applied in
// order. Every indexLogLimit records the whole list is written again as a
// new base (compaction), whose seq B' is one more than the last record it
// folds in (a number no record has); then B' gets its log, empty, and the
// logs before it are removed. A reader that read the previous base and
// finds its log gone finds a newer one, and reads again; one that read it
// before the removal reads the records the new base folded in, the same
// list.
//
// Records are appended by one writer at a time: the process is the
// store's only writer, and the writes of one user's list take turns (see
// updateIndex).
//
// On a store that cannot append (one that is not a storage.Stager), and
// in data folders written before the logs were files of their own, each
// record is a key of its own, created if absent, and a compaction removes
// them oldest first, so that a reader of the previous base meets a gap:
//
//	indexlog/<user hash>/<seq, 16 hex>.json  {"put":[...],"del":[...]}
//
// A reader applies such records first, then the base's log: the two kinds
// meet only in a folder whose server was upgraded between two writes.
//
// A base without "log" (a bucket's, written by servers that share it, or a
// data folder's from before the log) has no records: such a list is
// rewritten whole, and a data folder's first write rewrites it with "log",
// numbered above any record or log already there, so that a stray one (of
// a log whose list was since written whole) is never applied.

// maxIndexLog is how many log records a short list may have before it is
// written whole again.
const maxIndexLog = 64

// indexLogLimit is how many log records a list of n images may have
// before it is written whole again: maxIndexLog, or one per 8 images of a
// longer list. Writing a list whole costs in proportion to its length, so
// a fixed limit would make each change of a long list cost more (and
// stall the uploads queued behind it longer): a list of 10,000 images,
// about 2.5 MB, would be written whole every 64 batches of changes. With
// the limit growing with the list, a change costs about the same whatever
// the list's length. Reading the list then reads up to n/8 records, each
// applied in time proportional to its own length (see logReplay): for
// batches of a few images each, about as much again as the list itself.
func indexLogLimit(n int) uint64 { return max(maxIndexLog, uint64(n/8)) }

func indexLogPrefix(userHash string) string { return "indexlog/" + userHash + "/" }

// indexLogKey is the key of a record stored on its own.
func indexLogKey(userHash string, seq uint64) string {
	return fmt.Sprintf("indexlog/%s/%016x.json", userHash, seq)
}

// indexLogFileKey is the key of the log that follows the base numbered
// base.
func indexLogFileKey(userHash string, base uint64) string {
	return fmt.Sprintf("indexlog/%s/%016x.log", userHash, base)
}

// indexLogName parses the name of a key under indexLogPrefix: the seq of
// a record stored on its own (file false), or the base of a log (file
// true).
func indexLogName(key string) (n uint64, file, ok bool) {
	i := strings.LastIndexByte(key, '/')
	name := key[i+1:]
	if base, isLog := strings.CutSuffix(name, ".log"); isLog {
		name, file = base, true
	} else if name, ok = strings.CutSuffix(name, ".json"); !ok {
		return 0, false, false
	}
	if len(name) != 16 {
		return 0, false, false
	}
	n, err := strconv.ParseUint(name, 16, 64)
	return n, file, err == nil
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

// A record in a log file is framed:
//
//	length   4 bytes, little-endian: of the record's JSON
//	checksum 4 bytes, little-endian: CRC-32C of the log's user hash and
//	         base (8 bytes, little-endian), then the seq's 8 bytes and the JSON
//	seq      8 bytes, little-endian
//	JSON     length bytes (appendIndexLogJSON)
//
// The checksum covers the log it belongs to, not only the record: bytes of
// another log (a block the file system gave back to a new one, seen after
// a crash before the new bytes reached it) read as a part of a record,
// never as one of this log.
const indexLogFrameHeader = 16

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// indexLogFrames frames the records of the log that follows the base
// numbered base in the user's list.
type indexLogFrames struct{ seed uint32 }

func framesOf(uh string, base uint64) indexLogFrames {
	c := crc32.Update(0, castagnoli, []byte(uh))
	return indexLogFrames{seed: crc32.Update(c, castagnoli, binary.LittleEndian.AppendUint64(nil, base))}
}

// append appends rec, framed, under seq.
func (f indexLogFrames) append(b []byte, seq uint64, rec *indexLogRecord) []byte {
	at := len(b)
	b = append(b, make([]byte, indexLogFrameHeader)...)
	b = appendIndexLogJSON(b, rec)
	h := b[at : at+indexLogFrameHeader]
	binary.LittleEndian.PutUint32(h[0:], uint32(len(b)-at-indexLogFrameHeader))
	binary.LittleEndian.PutUint64(h[8:], seq)
	binary.LittleEndian.PutUint32(h[4:], crc32.Update(f.seed, castagnoli, b[at+8:]))
	return b
}

// next returns the first record framed in b, and the bytes after it.
// whole is false if b does not begin with a whole record of this log (it
// is empty, or ends in a part of one, or in bytes a crash left): nothing
// after that point may be applied.
func (f indexLogFrames) next(b []byte) (seq uint64, rec []byte, rest []byte, whole bool) {
	if len(b) < indexLogFrameHeader {
		return 0, nil, nil, false
	}
	n := binary.LittleEndian.Uint32(b[0:])
	if uint64(n) > uint64(len(b)-indexLogFrameHeader) {
		return 0, nil, nil, false
	}
	end := indexLogFrameHeader + int(n)
	if crc32.Update(f.seed, castagnoli, b[8:end]) != binary.LittleEndian.Uint32(b[4:]) {
		return 0, nil, nil, false
	}
	return binary.LittleEndian.Uint64(b[8:]), b[indexLogFrameHeader:end], b[end:], true
}

// apply changes imgs as rec says, and returns them. If added is not nil,
// the ids of the images rec adds are put in it.
func (rec *indexLogRecord) apply(imgs []Image, added map[string]bool) []Image {
	r := newLogReplay(imgs)
	r.apply(rec, added)
	return r.result()
}

// A logReplay applies a log's records to a list one after another, each in
// time proportional to its own length, not the list's: the places of the
// images are kept from record to record, and removed images are dropped
// once, at the end. A long list has a long log (see indexLogLimit): applied
// one at a time, each over the whole list, its records would cost the
// square of its length.
//
// A record removes the images it names, keeping the order of the others,
// then replaces in place each image it puts that is there, and adds the
// others at the end, in its order.
type logReplay struct {
	imgs []Image
	pos  map[string]int // the place of each image still there, by id
	gone []bool         // by place: removed (grown with imgs, if any are)
}

func newLogReplay(imgs []Image) *logReplay {
	r := &logReplay{imgs: imgs, pos: make(map[string]int, len(imgs))}
	for i, img := range imgs {
		r.pos[img.ID] = i
	}
	return r
}

// apply applies rec. If added is not nil, the ids of the images rec adds
// are put in it.
func (r *logReplay) apply(rec *indexLogRecord, added map[string]bool) {
	for _, id := range rec.Del {
		i, ok := r.pos[id]
		if !ok {
			continue
		}
		if r.gone == nil {
			r.gone = make([]bool, len(r.imgs), cap(r.imgs))
		}
		r.gone[i] = true
		delete(r.pos, id)
	}
	for _, img := range rec.Put {
		if i, ok := r.pos[img.ID]; ok {
			r.imgs[i] = img
			continue
		}
		r.pos[img.ID] = len(r.imgs)
		r.imgs = append(r.imgs, img)
		if r.gone != nil {
			r.gone = append(r.gone, false)
		}
		if added != nil {
			added[img.ID] = true
		}
	}
}

// result returns the list with every record applied.
func (r *logReplay) result() []Image {
	if r.gone == nil {
		return r.imgs
	}
	kept := r.imgs[:0]
	for i, img := range r.imgs {
		if !r.gone[i] {
			kept = append(kept, img)
		}
	}
	clear(r.imgs[len(kept):])
	return kept
}

// errIndexLogGap is met by a reader that raced a compaction (or found a
// record missing).
var errIndexLogGap = errors.New("a record of the list's log is missing")

// indexLogState is what a read of a list's log found.
type indexLogState struct {
	seq  uint64 // the last record's (the base's if there are none)
	torn bool   // the log ends in a part of a record: see the top of this file
}

// readIndexLog applies to ix, read from a base whose seq is base, the log
// records after it. raced reports whether a write of the list ended since
// the read began.
func (s *Service) readIndexLog(ctx context.Context, uh string, base uint64, ix *index, raced func() bool) (indexLogState, error) {
	seqs, logs, err := s.indexLogKeys(ctx, uh)
	if err != nil {
		return indexLogState{}, err
	}
	st := indexLogState{seq: base}
	added := map[string]bool{}
	var replay *logReplay // made at the first record
	apply := func(seq uint64, data []byte, where string) error {
		if seq != st.seq+1 {
			return fmt.Errorf("%w: %s holds record %d after %d", errIndexLogGap, where, seq, st.seq)
		}
		var rec indexLogRecord
		if err := json.Unmarshal(data, &rec); err != nil {
			return fmt.Errorf("%s: record %d: %w", where, seq, err)
		}
		if replay == nil {
			replay = newLogReplay(ix.Images)
		}
		replay.apply(&rec, added)
		st.seq = seq
		return nil
	}
	for _, seq := range seqs {
		if seq <= base {
			continue // folded into the base already
		}
		key := indexLogKey(uh, seq)
		data, err := s.getBytes(ctx, key)
		if errors.Is(err, storage.ErrNotFound) {
			err = fmt.Errorf("%w: %s: %w", errIndexLogGap, key, err)
		}
		if err != nil {
			return indexLogState{}, err
		}
		if err := apply(seq, data, key); err != nil {
			return indexLogState{}, err
		}
	}
	switch {
	case slices.Contains(logs, base):
		key := indexLogFileKey(uh, base)
		data, err := s.getBytes(ctx, key)
		if errors.Is(err, storage.ErrNotFound) {
			// Removed since it was listed: a newer base folds it in.
			return indexLogState{}, fmt.Errorf("%w: %s: %w", errIndexLogGap, key, err)
		}
		if err != nil {
			return indexLogState{}, err
		}
		frames := framesOf(uh, base)
		for len(data) > 0 {
			seq, rec, rest, whole := frames.next(data)
			if !whole {
				st.torn = true
				break
			}
			if err := apply(seq, rec, key); err != nil {
				return indexLogState{}, err
			}
			data = rest
		}
	case len(logs) > 0 && logs[len(logs)-1] > base:
		// A newer base was written, and this one's log removed.
		return indexLogState{}, fmt.Errorf("%w: the log after %d is gone, %s is there", errIndexLogGap, base, indexLogFileKey(uh, logs[len(logs)-1]))
	}
	if replay != nil {
		ix.Images = replay.result()
	}
	if len(added) > 0 && !s.cfg.KeepUnpublished {
		var again bool
		if ix.Images, again = s.dropUnpublished(ctx, uh, ix.Images, added, raced); again {
			// The missing bytes may be an image's old ones, removed
			// by a replacement or deletion written after the records
			// were listed: read again.
			return indexLogState{}, fmt.Errorf("%w: a write raced the check of the images it added", errIndexLogGap)
		}
	}
	return st, nil
}

// getBytes returns the whole value of key.
func (s *Service) getBytes(ctx context.Context, key string) ([]byte, error) {
	rc, _, err := s.store.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
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

// indexLogKeys returns the sequence numbers of the user's records stored
// on their own, and the bases of the user's log files, each in order.
func (s *Service) indexLogKeys(ctx context.Context, uh string) (seqs, logs []uint64, err error) {
	for key, err := range s.store.List(ctx, indexLogPrefix(uh)) {
		if err != nil {
			return nil, nil, err
		}
		if n, file, ok := indexLogName(key); ok && file {
			logs = append(logs, n)
		} else if ok {
			seqs = append(seqs, n)
		}
	}
	slices.Sort(seqs)
	slices.Sort(logs)
	return seqs, logs, nil
}

// topIndexLogSeq returns the highest sequence number of the user's
// records stored on their own and base of the user's log files, 0 if
// there are none.
func (s *Service) topIndexLogSeq(ctx context.Context, uh string) (uint64, error) {
	seqs, logs, err := s.indexLogKeys(ctx, uh)
	if err != nil {
		return 0, err
	}
	var top uint64
	if len(seqs) > 0 {
		top = seqs[len(seqs)-1]
	}
	if len(logs) > 0 {
		top = max(top, logs[len(logs)-1])
	}
	return top, nil
}

// putIndexLog writes the record seq of the log after the base numbered
// base: appended to the base's log file where the store can append, else
// as a key of its own, if absent.
func (s *Service) putIndexLog(ctx context.Context, uh string, base, seq uint64, rec *indexLogRecord) error {
	if s.stager == nil {
		_, err := s.putEncoded(ctx, indexLogKey(uh, seq), storage.Cond{IfAbsent: true}, func(b []byte) []byte { return appendIndexLogJSON(b, rec) })
		return err
	}
	bp := encodeRecord(func(b []byte) []byte { return framesOf(uh, base).append(b, seq, rec) })
	defer releaseRecord(bp)
	return storeErr(s.stager.Append(ctx, indexLogFileKey(uh, base), *bp))
}

// pruneIndexLog removes the user's log records up to seq, and the logs
// before it, which the base numbered seq holds (see the top of this
// file). Where logs are files, the base's own log is made first. What it
// fails to remove is left for the next compaction.
func (s *Service) pruneIndexLog(ctx context.Context, uh string, seq uint64) {
	if s.stager != nil {
		if err := s.stager.Append(ctx, indexLogFileKey(uh, seq), nil); err != nil {
			s.log.Warn("could not start a list's log; the logs before stay until the next compaction", "err", err)
			return
		}
	}
	seqs, logs, err := s.indexLogKeys(ctx, uh)
	if err != nil {
		s.log.Warn("could not list a list's log records to remove them", "err", err)
		return
	}
	remove := s.store.Delete
	if s.stager != nil {
		// Their removal need not be durable: a record at or below the
		// base's seq is never applied, nor a log but the base's, and a
		// crash that brings one back leaves it for the next compaction.
		// Only the order matters.
		remove = s.stager.Unlink
	}
	var keys []string
	for _, n := range seqs {
		if n <= seq {
			keys = append(keys, indexLogKey(uh, n))
		}
	}
	for _, n := range logs {
		if n < seq {
			keys = append(keys, indexLogFileKey(uh, n))
		}
	}
	for _, key := range keys {
		if err := remove(ctx, key); err != nil && !errors.Is(err, storage.ErrNotFound) {
			s.log.Warn("could not remove a list's log record; the next compaction will", "key", key, "err", err)
			return
		}
	}
}
