package imagetype

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// parseWebP reads the RIFF header and the first chunk (VP8, VP8L or VP8X),
// which holds the canvas size. The RIFF header gives the file's length.
func parseWebP(r *reader, dims func(w, h int64) error) (int64, error) {
	b, err := r.full(20)
	if err != nil {
		return 0, err
	}
	riffLen := int64(binary.LittleEndian.Uint32(b[4:]))
	chunk, chunkLen := string(b[12:16]), int64(binary.LittleEndian.Uint32(b[16:]))
	if riffLen < 4+8+chunkLen {
		return 0, fmt.Errorf("RIFF length %d too short for its %s chunk", riffLen, chunk)
	}
	var w, h int64
	switch chunk {
	case "VP8 ":
		if chunkLen < 10 {
			return 0, errors.New("short VP8 chunk")
		}
		c, err := r.full(10)
		if err != nil {
			return 0, err
		}
		if c[0]&1 != 0 || c[3] != 0x9d || c[4] != 0x01 || c[5] != 0x2a {
			return 0, errors.New("VP8 chunk is not a key frame")
		}
		w, h = int64(binary.LittleEndian.Uint16(c[6:])&0x3fff), int64(binary.LittleEndian.Uint16(c[8:])&0x3fff)
	case "VP8L":
		if chunkLen < 5 {
			return 0, errors.New("short VP8L chunk")
		}
		c, err := r.full(5)
		if err != nil {
			return 0, err
		}
		if c[0] != 0x2f || c[4]>>5 != 0 {
			return 0, errors.New("bad VP8L signature or version")
		}
		bits := binary.LittleEndian.Uint32(c[1:])
		w, h = int64(bits&0x3fff)+1, int64(bits>>14&0x3fff)+1
	case "VP8X":
		if chunkLen < 10 {
			return 0, errors.New("short VP8X chunk")
		}
		c, err := r.full(10)
		if err != nil {
			return 0, err
		}
		w = int64(c[4]) | int64(c[5])<<8 | int64(c[6])<<16 + 1
		h = int64(c[7]) | int64(c[8])<<8 | int64(c[9])<<16 + 1
	default:
		return 0, fmt.Errorf("unknown first chunk %q", chunk)
	}
	if err := dims(w, h); err != nil {
		return 0, err
	}
	return 8 + riffLen, nil
}
