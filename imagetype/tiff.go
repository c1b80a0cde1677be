package imagetype

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
)

// parseTIFF reads the first image file directory (classic TIFF or BigTIFF)
// for the image's size. The directory can be anywhere after the header, so
// the stream is skipped forward to it; strip and tile tables found after it
// are read too, so that a file cut before its last strip is refused.
func parseTIFF(r *reader, dims func(w, h int64) error) (int64, error) {
	b, err := r.full(8)
	if err != nil {
		return 0, err
	}
	var bo binary.ByteOrder
	switch string(b[:2]) {
	case "II":
		bo = binary.LittleEndian
	case "MM":
		bo = binary.BigEndian
	default:
		return 0, errors.New("bad byte order")
	}
	big := false
	var ifd int64
	switch bo.Uint16(b[2:]) {
	case 42:
		ifd = int64(bo.Uint32(b[4:]))
	case 43:
		big = true
		if bo.Uint16(b[4:]) != 8 || bo.Uint16(b[6:]) != 0 {
			return 0, errors.New("bad BigTIFF header")
		}
		o, err := r.full(8)
		if err != nil {
			return 0, err
		}
		ifd = int64(bo.Uint64(o))
	default:
		return 0, errors.New("bad version number")
	}
	if ifd < r.pos() || ifd > 1<<62 {
		return 0, fmt.Errorf("directory offset %d", ifd)
	}
	if err := r.skipTo(ifd); err != nil {
		return 0, err
	}
	countLen, entryLen, inlineLen := 2, 12, int64(4)
	if big {
		countLen, entryLen, inlineLen = 8, 20, 8
	}
	c, err := r.full(countLen)
	if err != nil {
		return 0, err
	}
	var count uint64
	if big {
		count = bo.Uint64(c)
	} else {
		count = uint64(bo.Uint16(c))
	}
	if count == 0 || count > 4096 {
		return 0, fmt.Errorf("%d directory entries", count)
	}

	// table is a strip or tile table: offsets or byte counts, either inline
	// (one value) or stored at an offset.
	type table struct {
		typ    uint16
		n, off int64
		inline []byte
		vals   []int64
	}
	var w, h int64 = -1, -1
	var valuesEnd int64 // where the last out-of-line tag value ends
	var offsets, counts table
	for range count {
		e, err := r.full(entryLen)
		if err != nil {
			return 0, err
		}
		tag, typ := bo.Uint16(e), bo.Uint16(e[2:])
		var n int64
		var val []byte
		if big {
			n, val = int64(bo.Uint64(e[4:])), e[12:20]
		} else {
			n, val = int64(bo.Uint32(e[4:])), e[8:12]
		}
		size := typeSize(typ)
		if typ == 16 && !big {
			return 0, fmt.Errorf("tag %d: 8-byte values exist only in BigTIFF", tag)
		}
		if vs := valueSize(typ); vs > 0 && n*vs > inlineLen && n < 1<<32 {
			var off int64
			if big {
				off = int64(bo.Uint64(val) & (1<<62 - 1))
			} else {
				off = int64(bo.Uint32(val))
			}
			valuesEnd = max(valuesEnd, off+n*vs)
		}
		switch tag {
		case 256, 257: // ImageWidth, ImageLength
			if n != 1 || (typ != 3 && typ != 4 && typ != 16) {
				return 0, fmt.Errorf("bad size tag %d", tag)
			}
			v := readUint(bo, typ, val)
			if tag == 256 {
				w = v
			} else {
				h = v
			}
		case 273, 324, 279, 325: // Strip/TileOffsets, Strip/TileByteCounts
			if size == 0 || n <= 0 {
				return 0, fmt.Errorf("bad strip table tag %d", tag)
			}
			t := table{typ: typ, n: n}
			if n*size <= inlineLen {
				t.inline = slices.Clone(val)
			} else if big {
				t.off = int64(bo.Uint64(val))
			} else {
				t.off = int64(bo.Uint32(val))
			}
			if tag == 273 || tag == 324 {
				offsets = t
			} else {
				counts = t
			}
		}
	}
	if w < 0 || h < 0 {
		return 0, errors.New("no image size in the first directory")
	}
	if err := dims(w, h); err != nil {
		return 0, err
	}
	if offsets.n == 0 || offsets.n != counts.n {
		return 0, errors.New("missing or mismatched strip tables")
	}
	// The end of the last strip is the least length of the file. Tables are
	// read in the order they lie in the stream; one stored behind the
	// directory was passed already, but then a file cut short would have
	// lost its directory, so there is nothing left to check. Huge tables
	// are not held in memory, and not checked.
	tables := []*table{&offsets, &counts}
	slices.SortFunc(tables, func(a, b *table) int { return cmp.Compare(a.off, b.off) })
	for _, t := range tables {
		s := typeSize(t.typ)
		switch {
		case t.inline != nil:
			for i := range t.n {
				t.vals = append(t.vals, readUint(bo, t.typ, t.inline[i*s:]))
			}
		case t.off >= r.pos() && t.n <= 1<<16:
			if err := r.skipTo(t.off); err != nil {
				return 0, err
			}
			for range t.n {
				v, err := r.full(int(s))
				if err != nil {
					return 0, err
				}
				t.vals = append(t.vals, readUint(bo, t.typ, v))
			}
		}
	}
	minLen := valuesEnd
	if len(offsets.vals) == len(counts.vals) {
		for i := range offsets.vals {
			minLen = max(minLen, offsets.vals[i]+counts.vals[i])
		}
	}
	return minLen, nil
}

func typeSize(typ uint16) int64 {
	switch typ {
	case 3: // SHORT
		return 2
	case 4: // LONG
		return 4
	case 16: // LONG8
		return 8
	}
	return 0
}

// valueSize is the size of one value of a TIFF field type.
func valueSize(typ uint16) int64 {
	switch typ {
	case 1, 2, 6, 7: // BYTE, ASCII, SBYTE, UNDEFINED
		return 1
	case 3, 8: // SHORT, SSHORT
		return 2
	case 4, 9, 11, 13: // LONG, SLONG, FLOAT, IFD
		return 4
	case 5, 10, 12, 16, 17, 18: // RATIONAL, SRATIONAL, DOUBLE, LONG8, SLONG8, IFD8
		return 8
	}
	return 0
}

func readUint(bo binary.ByteOrder, typ uint16, b []byte) int64 {
	switch typ {
	case 3:
		return int64(bo.Uint16(b))
	case 4:
		return int64(bo.Uint32(b))
	case 16:
		return int64(bo.Uint64(b) & (1<<62 - 1))
	}
	return 0
}
