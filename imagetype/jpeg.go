package imagetype

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
)

// parseJPEG walks the JPEG's marker segments and entropy-coded scans up to
// the end-of-image marker, taking the size from the first start-of-frame
// segment. Bytes after the end-of-image marker (camera trailers, the extra
// images of MPF files) are allowed.
func parseJPEG(r *reader, dims func(w, h int64) error) (int64, error) {
	if err := r.skip(2); err != nil { // SOI
		return 0, err
	}
	sawFrame, sawScan := false, false
	m, err := nextMarker(r)
	for err == nil {
		switch {
		case m == 0xd8:
			return 0, errors.New("second start-of-image marker")
		case m == 0xd9: // EOI
			if !sawScan {
				return 0, errors.New("no image data before end of image")
			}
			return 0, nil
		case m >= 0xd0 && m <= 0xd7, m == 0x01: // restart markers, TEM: no length
			m, err = nextMarker(r)
			continue
		}
		var b []byte
		if b, err = r.full(2); err != nil {
			return 0, err
		}
		n := int64(binary.BigEndian.Uint16(b))
		if n < 2 {
			return 0, fmt.Errorf("segment length %d", n)
		}
		n -= 2
		switch {
		case isSOF(m):
			if n < 6 {
				return 0, errors.New("short frame header")
			}
			if b, err = r.full(6); err != nil {
				return 0, err
			}
			h, w, comps := int64(binary.BigEndian.Uint16(b[1:])), int64(binary.BigEndian.Uint16(b[3:])), int64(b[5])
			if p := b[0]; p < 2 || p > 16 || m == 0xc0 && p != 8 {
				return 0, fmt.Errorf("sample precision %d", p)
			}
			if comps < 1 || comps > 4 || n != 6+3*comps {
				return 0, fmt.Errorf("bad frame header (%d components)", comps)
			}
			if !sawFrame {
				if err := dims(w, h); err != nil {
					return 0, err
				}
				sawFrame = true
			}
			if err = r.skip(n - 6); err != nil {
				return 0, err
			}
			m, err = nextMarker(r)
		case m == 0xda: // SOS: header, then entropy-coded data up to the next marker
			if !sawFrame {
				return 0, errors.New("scan before frame header")
			}
			if err = r.skip(n); err != nil {
				return 0, err
			}
			sawScan = true
			m, err = skipEntropyData(r)
		default:
			if err = r.skip(n); err != nil {
				return 0, err
			}
			m, err = nextMarker(r)
		}
	}
	return 0, err
}

func isSOF(m byte) bool {
	return m >= 0xc0 && m <= 0xcf && m != 0xc4 && m != 0xc8 && m != 0xcc
}

// nextMarker reads a marker: 0xFF, optional 0xFF fill bytes, and the code.
func nextMarker(r *reader) (byte, error) {
	b, err := r.byte()
	if err != nil {
		return 0, err
	}
	if b != 0xff {
		return 0, fmt.Errorf("expected a marker, found 0x%02x", b)
	}
	for b == 0xff {
		if b, err = r.byte(); err != nil {
			return 0, err
		}
	}
	if b == 0 {
		return 0, errors.New("stuffed zero outside a scan")
	}
	return b, nil
}

// skipEntropyData skips a scan's entropy-coded bytes, where 0xFF is followed
// by 0x00 (a stuffed byte) or a restart marker, and returns the first real
// marker after it.
func skipEntropyData(r *reader) (byte, error) {
	for {
		_, err := r.br.ReadSlice(0xff)
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			return 0, unexpected(err)
		}
		b, err := r.byte()
		for err == nil && b == 0xff {
			b, err = r.byte()
		}
		if err != nil {
			return 0, err
		}
		if b == 0 || (b >= 0xd0 && b <= 0xd7) {
			continue
		}
		return b, nil
	}
}
