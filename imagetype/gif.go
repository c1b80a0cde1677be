package imagetype

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// parseGIF walks the GIF's blocks. The logical screen and every frame count
// against the pixel limit. A file must hold at least one whole frame; it may
// end at the trailer, or (as some encoders leave it) right after a whole
// block, but not inside one.
func parseGIF(r *reader, dims func(w, h int64) error) (int64, error) {
	b, err := r.full(13)
	if err != nil {
		return 0, err
	}
	sw, sh := int64(binary.LittleEndian.Uint16(b[6:])), int64(binary.LittleEndian.Uint16(b[8:]))
	if sw > 0 && sh > 0 {
		if err := dims(sw, sh); err != nil {
			return 0, err
		}
	}
	if b[10]&0x80 != 0 {
		if err := r.skip(3 << (b[10]&7 + 1)); err != nil {
			return 0, err
		}
	}
	frames := 0
	for {
		c, err := r.br.ReadByte()
		if err == io.EOF && frames > 0 {
			return 0, nil // no trailer, but every block whole
		}
		if err != nil {
			return 0, unexpected(err)
		}
		switch c {
		case 0x3b: // trailer
			if frames == 0 {
				return 0, errors.New("no frame")
			}
			return 0, nil
		case 0x21: // extension: label, then sub-blocks
			if _, err := r.byte(); err != nil {
				return 0, err
			}
			if err := skipSubBlocks(r); err != nil {
				return 0, err
			}
		case 0x2c: // image descriptor
			d, err := r.full(9)
			if err != nil {
				return 0, err
			}
			w, h := int64(binary.LittleEndian.Uint16(d[4:])), int64(binary.LittleEndian.Uint16(d[6:]))
			if err := dims(w, h); err != nil {
				return 0, err
			}
			if d[8]&0x80 != 0 {
				if err := r.skip(3 << (d[8]&7 + 1)); err != nil {
					return 0, err
				}
			}
			if _, err := r.byte(); err != nil { // LZW minimum code size
				return 0, err
			}
			if err := skipSubBlocks(r); err != nil {
				return 0, err
			}
			frames++
		default:
			return 0, fmt.Errorf("unknown block 0x%02x", c)
		}
	}
}

func skipSubBlocks(r *reader) error {
	for {
		n, err := r.byte()
		if err != nil {
			return err
		}
		if n == 0 {
			return nil
		}
		if err := r.skip(int64(n)); err != nil {
			return err
		}
	}
}
