package domain

import (
	"bufio"
	"io"
)

// Metadata stripping (Config.StripMetadata): a JPEG's metadata segments are
// removed as the upload streams in, before the bytes are checked, hashed,
// counted and compressed, so that what is stored, its size and its SHA-256
// are those of the stripped file. The pixels are never decoded or
// re-encoded.
//
// Removed, wherever they appear before the first scan: APP1 (Exif, with
// its GPS block and camera serials, and XMP), APP13 (IPTC and Photoshop
// resources) and COM (comments). Kept: every other segment, APP0 (JFIF),
// APP2 (the ICC colour profile), APP14 (Adobe's colour transform) and the
// tables and frame header included, byte for byte, and everything from the
// first start-of-scan marker on (the compressed pixels and whatever
// follows the image), untouched.
//
// The filter never fails on its own: a stream that is not a JPEG, or whose
// segment structure stops making sense, is passed on unchanged from that
// point, and the image check then judges it as it would have judged the
// original. Only what was a whole, well-formed segment is ever removed.

// stripFilter is the streaming filter. It holds at most one segment header
// and a read buffer, whatever the input.
type stripFilter struct {
	br    *bufio.Reader
	state stripState
	out   []byte // bytes decided but not yet read
	hdr   [4]byte
	left  int // bytes of the current segment's payload not yet passed on or skipped
	err   error
	// pending is an error of the input met while peeking (which takes it
	// from the buffered reader), returned once the bytes before it are.
	pending error
}

type stripState int

const (
	stripStart   stripState = iota // nothing read yet
	stripMarkers                   // between segments, before the first scan
	stripCopy                      // inside a kept segment's payload
	stripSkip                      // inside a removed segment's payload
	stripPass                      // everything left passes unchanged
)

// maxFillBytes bounds the 0xFF fill bytes taken before one marker; a
// stream with more is passed on unchanged from there (real encoders write
// none or a few).
const maxFillBytes = 64

// stripJPEGMetadata returns a reader of r's bytes with a JPEG's metadata
// segments removed (see above); any other stream reads unchanged. Errors
// of r are returned as they are.
func stripJPEGMetadata(r io.Reader) io.Reader {
	return &stripFilter{br: bufio.NewReaderSize(r, 32<<10)}
}

// uploadReader is what an upload's bytes pass through before they are
// checked and stored: the metadata filter when the operator turned it on.
func (s *Service) uploadReader(r io.Reader) io.Reader {
	if s.cfg.StripMetadata {
		return stripJPEGMetadata(r)
	}
	return r
}

// removedSegment reports whether a segment with this marker is metadata to
// remove: APP1 (Exif, XMP), APP13 (IPTC, Photoshop) and COM.
func removedSegment(marker byte) bool {
	return marker == 0xe1 || marker == 0xed || marker == 0xfe
}

func (f *stripFilter) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for len(f.out) == 0 && f.err == nil {
		switch f.state {
		case stripPass:
			if f.pending != nil && f.br.Buffered() == 0 {
				f.err = f.pending
				return 0, f.err
			}
			n, err := f.br.Read(p)
			if err != nil {
				f.err = err
			}
			return n, err
		case stripCopy:
			if f.left == 0 {
				f.state = stripMarkers
				continue
			}
			n, err := f.br.Read(p[:min(len(p), f.left)])
			f.left -= n
			if err != nil {
				f.err = err
			}
			if n > 0 {
				return n, nil
			}
		case stripSkip:
			if f.left == 0 {
				f.state = stripMarkers
				continue
			}
			n, err := f.br.Discard(f.left)
			f.left -= n
			if err != nil {
				f.err = err
			}
		case stripStart:
			f.start()
		case stripMarkers:
			f.marker()
		}
	}
	if len(f.out) > 0 {
		n := copy(p, f.out)
		f.out = f.out[n:]
		return n, nil
	}
	return 0, f.err
}

// start decides whether the stream is a JPEG: it must begin with the
// start-of-image marker.
func (f *stripFilter) start() {
	b, err := f.br.Peek(2)
	if len(b) < 2 {
		f.passRest(err) // too short to be anything: passed on as it is
		return
	}
	if b[0] != 0xff || b[1] != 0xd8 {
		f.state = stripPass
		return
	}
	f.br.Discard(2)
	f.out = append(f.out[:0], 0xff, 0xd8)
	f.state = stripMarkers
}

// marker reads the next marker and, for a segment that has one, its
// length, and decides what becomes of the segment. Anything unexpected
// hands the rest of the stream on unchanged, the bytes read so far
// included.
func (f *stripFilter) marker() {
	// A marker: 0xFF, optional 0xFF fill bytes, a code. The bytes are
	// peeked, and consumed only once the whole header is known.
	fills := 0
	for {
		b, err := f.br.Peek(fills + 1)
		if len(b) < fills+1 {
			f.passRest(err)
			return
		}
		c := b[fills]
		if fills == 0 && c != 0xff {
			f.state = stripPass // not a marker where one must be
			return
		}
		if c == 0xff {
			fills++
			if fills > maxFillBytes {
				f.state = stripPass
				return
			}
			continue
		}
		break
	}
	hdr, _ := f.br.Peek(fills + 1)
	code := hdr[fills]
	switch {
	case code == 0x00 || code == 0xd8:
		// A stuffed zero or a second start-of-image outside a scan:
		// malformed, judged by the check.
		f.state = stripPass
		return
	case code == 0xda || code == 0xd9:
		// Start of scan (or an end of image without one): from here on,
		// every byte is kept as it is.
		f.state = stripPass
		return
	case code >= 0xd0 && code <= 0xd7 || code == 0x01:
		// A marker without a length (restart, TEM): kept.
		f.out = append(f.out[:0], hdr...)
		f.br.Discard(len(hdr))
		return
	}
	full, err := f.br.Peek(fills + 3)
	if len(full) < fills+3 {
		f.passRest(err)
		return
	}
	length := int(full[fills+1])<<8 | int(full[fills+2])
	if length < 2 {
		f.state = stripPass
		return
	}
	f.left = length - 2
	if removedSegment(code) {
		f.br.Discard(len(full))
		f.state = stripSkip
		return
	}
	f.out = append(f.out[:0], full...)
	f.br.Discard(len(full))
	f.state = stripCopy
}

// passRest ends the filtering after a short read: what remains (a
// truncated header, or nothing) is passed on, then the input's error.
func (f *stripFilter) passRest(err error) {
	f.state = stripPass
	if err == nil || err == bufio.ErrBufferFull {
		err = io.ErrUnexpectedEOF // cannot happen: peeks are far shorter than the buffer
	}
	f.pending = err
}
