package imagetype

import (
	"encoding/binary"
	"fmt"
)

// parseSGI reads the 512-byte SGI image header. An uncompressed image's
// length follows from its size; for a run-length encoded one the offset
// tables that follow the header say where the last run ends.
func parseSGI(r *reader, dims func(w, h int64) error) (int64, error) {
	b, err := r.full(12)
	if err != nil {
		return 0, err
	}
	storage, bpc, dim := b[2], int64(b[3]), binary.BigEndian.Uint16(b[4:])
	x, y, z := int64(binary.BigEndian.Uint16(b[6:])), int64(binary.BigEndian.Uint16(b[8:])), int64(binary.BigEndian.Uint16(b[10:]))
	if storage > 1 || (bpc != 1 && bpc != 2) || dim < 1 || dim > 3 {
		return 0, fmt.Errorf("bad header (storage %d, %d bytes per channel, %d dimensions)", storage, bpc, dim)
	}
	if dim < 3 {
		z = 1
	}
	if dim < 2 {
		y = 1
	}
	if err := dims(x, y); err != nil {
		return 0, err
	}
	if z < 1 {
		return 0, fmt.Errorf("%d channels", z)
	}
	if err := r.skip(512 - 12); err != nil {
		return 0, err
	}
	if storage == 0 {
		return 512 + x*y*z*bpc, nil
	}
	// RLE: a table of y*z start offsets, then one of y*z lengths.
	n := y * z
	var maxStart, end int64
	starts := make([]int64, 0, min(n, 1<<16))
	for i := range 2 * n {
		v, err := r.full(4)
		if err != nil {
			return 0, err
		}
		u := int64(binary.BigEndian.Uint32(v))
		switch {
		case i < n && n <= 1<<16:
			starts = append(starts, u)
		case i < n:
			maxStart = max(maxStart, u)
		case len(starts) > 0:
			end = max(end, starts[i-n]+u)
		default:
			end = max(end, maxStart+1)
		}
	}
	return end, nil
}
