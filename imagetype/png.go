package imagetype

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

// parsePNG checks the signature, the IHDR chunk and then every chunk's
// length and CRC up to IEND, so that a truncated or damaged file is refused.
func parsePNG(r *reader, dims func(w, h int64) error) (int64, error) {
	if err := r.skip(8); err != nil {
		return 0, err
	}
	crc := crc32.NewIEEE()
	sawData := false
	for i := 0; ; i++ {
		b, err := r.full(8)
		if err != nil {
			return 0, err
		}
		n := int64(binary.BigEndian.Uint32(b))
		typ := string(b[4:8])
		if n > 1<<31-1 {
			return 0, fmt.Errorf("chunk length %d", n)
		}
		crc.Reset()
		crc.Write(b[4:8])
		if i == 0 {
			if typ != "IHDR" || n != 13 {
				return 0, errors.New("first chunk is not IHDR")
			}
			h, err := r.full(13)
			if err != nil {
				return 0, err
			}
			crc.Write(h)
			if err := checkIHDR(h); err != nil {
				return 0, err
			}
			if err := dims(int64(binary.BigEndian.Uint32(h)), int64(binary.BigEndian.Uint32(h[4:]))); err != nil {
				return 0, err
			}
		} else if _, err := io.CopyN(crc, r.br, n); err != nil {
			return 0, unexpected(err)
		}
		sum, err := r.full(4)
		if err != nil {
			return 0, err
		}
		if binary.BigEndian.Uint32(sum) != crc.Sum32() {
			return 0, fmt.Errorf("bad CRC in %q chunk", typ)
		}
		switch typ {
		case "IDAT":
			sawData = true
		case "IEND":
			if !sawData {
				return 0, errors.New("no IDAT chunk")
			}
			return 0, nil
		}
	}
}

func checkIHDR(h []byte) error {
	depth, color := h[8], h[9]
	ok := false
	switch color {
	case 0:
		ok = depth == 1 || depth == 2 || depth == 4 || depth == 8 || depth == 16
	case 3:
		ok = depth == 1 || depth == 2 || depth == 4 || depth == 8
	case 2, 4, 6:
		ok = depth == 8 || depth == 16
	}
	if !ok {
		return fmt.Errorf("bad bit depth %d for color type %d", depth, color)
	}
	if h[10] != 0 || h[11] != 0 || h[12] > 1 {
		return errors.New("bad compression, filter or interlace method")
	}
	return nil
}

func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
