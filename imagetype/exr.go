package imagetype

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
)

// parseEXR reads an OpenEXR header's attributes for the data window. For a
// single-part scan-line file it also reads the chunk offset table, and
// requires the file to reach the last chunk's header.
func parseEXR(r *reader, dims func(w, h int64) error) (int64, error) {
	b, err := r.full(8)
	if err != nil {
		return 0, err
	}
	flags := binary.LittleEndian.Uint32(b[4:])
	if flags&0xff != 2 {
		return 0, fmt.Errorf("version %d", flags&0xff)
	}
	tiled, multipart := flags&0x200 != 0, flags&0x1000 != 0
	var window []byte
	compression := -1
	for {
		name, err := exrString(r)
		if err != nil {
			return 0, err
		}
		if name == "" {
			break
		}
		if _, err := exrString(r); err != nil { // type name
			return 0, err
		}
		s, err := r.full(4)
		if err != nil {
			return 0, err
		}
		size := int64(int32(binary.LittleEndian.Uint32(s)))
		if size < 0 || size > 1<<24 {
			return 0, fmt.Errorf("attribute %q of %d bytes", name, size)
		}
		switch {
		case name == "dataWindow" && size == 16 && window == nil:
			v, err := r.full(16)
			if err != nil {
				return 0, err
			}
			window = bytes.Clone(v)
		case name == "compression" && size == 1:
			c, err := r.byte()
			if err != nil {
				return 0, err
			}
			compression = int(c)
		default:
			if err := r.skip(size); err != nil {
				return 0, err
			}
		}
	}
	if window == nil {
		return 0, errors.New("no dataWindow attribute")
	}
	i := func(k int) int64 { return int64(int32(binary.LittleEndian.Uint32(window[4*k:]))) }
	w, h := i(2)-i(0)+1, i(3)-i(1)+1
	if err := dims(w, h); err != nil {
		return 0, err
	}
	if tiled || multipart {
		return r.pos() + 1, nil // at least something after the headers
	}
	lines := map[int]int64{0: 1, 1: 1, 2: 1, 3: 16, 4: 32, 5: 16, 6: 32, 7: 32, 8: 32, 9: 256}[compression]
	if lines == 0 {
		return 0, fmt.Errorf("compression %d", compression)
	}
	chunks := (h + lines - 1) / lines
	var last int64
	for range chunks {
		o, err := r.full(8)
		if err != nil {
			return 0, err
		}
		last = max(last, int64(binary.LittleEndian.Uint64(o)&(1<<62-1)))
	}
	if last < r.pos() {
		return 0, fmt.Errorf("chunk offset %d inside the header", last)
	}
	// The last chunk: its line number and data length, then the data.
	if err := r.skipTo(last); err != nil {
		return 0, err
	}
	c, err := r.full(8)
	if err != nil {
		return 0, err
	}
	return last + 8 + int64(binary.LittleEndian.Uint32(c[4:])), nil
}

// exrString reads a NUL-terminated attribute name of at most 255 bytes.
func exrString(r *reader) (string, error) {
	var s []byte
	for {
		c, err := r.byte()
		if err != nil {
			return "", err
		}
		if c == 0 {
			return string(s), nil
		}
		if len(s) == 255 {
			return "", errors.New("attribute name too long")
		}
		s = append(s, c)
	}
}
