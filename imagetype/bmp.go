package imagetype

import (
	"encoding/binary"
	"fmt"
)

// parseBMP reads the file header and the DIB header (the OS/2 core header or
// any of the Windows info headers) and derives how long the pixel data must
// be.
func parseBMP(r *reader, dims func(w, h int64) error) (int64, error) {
	b, err := r.full(18)
	if err != nil {
		return 0, err
	}
	dataOff := int64(binary.LittleEndian.Uint32(b[10:]))
	hdrLen := int64(binary.LittleEndian.Uint32(b[14:]))
	var w, h, planes, bpp, compression, imageSize int64
	switch hdrLen {
	case 12: // BITMAPCOREHEADER
		c, err := r.full(8)
		if err != nil {
			return 0, err
		}
		w, h = int64(binary.LittleEndian.Uint16(c)), int64(binary.LittleEndian.Uint16(c[2:]))
		planes, bpp = int64(binary.LittleEndian.Uint16(c[4:])), int64(binary.LittleEndian.Uint16(c[6:]))
	case 16, 40, 52, 56, 64, 108, 124:
		c, err := r.full(int(min(hdrLen, 40) - 4))
		if err != nil {
			return 0, err
		}
		w, h = int64(int32(binary.LittleEndian.Uint32(c))), int64(int32(binary.LittleEndian.Uint32(c[4:])))
		planes, bpp = int64(binary.LittleEndian.Uint16(c[8:])), int64(binary.LittleEndian.Uint16(c[10:]))
		if hdrLen > 16 {
			compression, imageSize = int64(binary.LittleEndian.Uint32(c[12:])), int64(binary.LittleEndian.Uint32(c[16:]))
		}
	default:
		return 0, fmt.Errorf("unknown header size %d", hdrLen)
	}
	if h < 0 {
		h = -h // top-down rows
	}
	if planes != 1 {
		return 0, fmt.Errorf("%d planes", planes)
	}
	switch bpp {
	case 0, 1, 2, 4, 8, 16, 24, 32, 64:
	default:
		return 0, fmt.Errorf("%d bits per pixel", bpp)
	}
	if dataOff < 14+hdrLen {
		return 0, fmt.Errorf("pixel data at %d, inside the headers", dataOff)
	}
	if err := dims(w, h); err != nil {
		return 0, err
	}
	switch compression {
	case 0, 3, 6: // uncompressed rows, padded to 4 bytes
		if bpp == 0 {
			return 0, fmt.Errorf("0 bits per pixel")
		}
		return dataOff + (w*bpp+31)/32*4*h, nil
	case 1, 2, 4, 5, 11, 12, 13: // RLE, JPEG, PNG, CMYK variants: the header says
		return dataOff + imageSize, nil
	default:
		return 0, fmt.Errorf("unknown compression %d", compression)
	}
}
