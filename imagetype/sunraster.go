package imagetype

import (
	"encoding/binary"
	"fmt"
)

// parseSunRaster reads the 32-byte Sun raster header. The raster's length is
// given by the header, or for uncompressed types follows from the size.
func parseSunRaster(r *reader, dims func(w, h int64) error) (int64, error) {
	b, err := r.full(32)
	if err != nil {
		return 0, err
	}
	u := func(i int) int64 { return int64(binary.BigEndian.Uint32(b[4*i:])) }
	w, h, depth, length, typ, mapType, mapLen := u(1), u(2), u(3), u(4), u(5), u(6), u(7)
	switch depth {
	case 1, 8, 24, 32:
	default:
		return 0, fmt.Errorf("depth %d", depth)
	}
	if typ > 5 && typ != 0xffff {
		return 0, fmt.Errorf("type %d", typ)
	}
	if mapType > 2 {
		return 0, fmt.Errorf("colour map type %d", mapType)
	}
	if err := dims(w, h); err != nil {
		return 0, err
	}
	if length == 0 && typ != 2 { // old files leave the length out
		length = (w*depth + 15) / 16 * 2 * h
	}
	return 32 + mapLen + length, nil
}
