package imagetype

import (
	"errors"
	"fmt"
	"io"
)

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'
}

// parsePNM reads a PBM, PGM or PPM header (P1 to P6). For the binary forms
// the raster's length follows from the header; for the plain (ASCII) forms
// the samples are counted.
func parsePNM(r *reader, dims func(w, h int64) error) (int64, error) {
	b, err := r.full(2)
	if err != nil {
		return 0, err
	}
	kind := b[1]
	fields := 3
	if kind == '1' || kind == '4' {
		fields = 2 // no maximum value in bitmaps
	}
	var v [3]int64
	for i := range fields {
		if v[i], err = pnmNumber(r); err != nil {
			return 0, err
		}
	}
	w, h, maxval := v[0], v[1], v[2]
	if fields == 3 && (maxval < 1 || maxval > 65535) {
		return 0, fmt.Errorf("maximum value %d", maxval)
	}
	if err := dims(w, h); err != nil {
		return 0, err
	}
	sampleLen := int64(1)
	if maxval > 255 {
		sampleLen = 2
	}
	switch kind {
	case '4':
		return r.pos() + (w+7)/8*h, nil
	case '5':
		return r.pos() + w*h*sampleLen, nil
	case '6':
		return r.pos() + 3*w*h*sampleLen, nil
	case '1':
		return 0, countPlainSamples(r, w*h, true)
	case '2':
		return 0, countPlainSamples(r, w*h, false)
	default: // '3'
		return 0, countPlainSamples(r, 3*w*h, false)
	}
}

// pnmNumber reads a header number: whitespace and #-comments, then digits,
// then exactly one whitespace character.
func pnmNumber(r *reader) (int64, error) {
	c, err := r.byte()
	for err == nil && (isSpace(c) || c == '#') {
		if c == '#' {
			for err == nil && c != '\n' && c != '\r' {
				c, err = r.byte()
			}
			continue
		}
		c, err = r.byte()
	}
	if err != nil {
		return 0, err
	}
	var n int64
	digits := 0
	for ; err == nil && c >= '0' && c <= '9'; c, err = r.byte() {
		if digits++; digits > 10 {
			return 0, errors.New("number too long")
		}
		n = n*10 + int64(c-'0')
	}
	if err != nil {
		return 0, err
	}
	if digits == 0 || !isSpace(c) {
		return 0, fmt.Errorf("bad header byte %q", c)
	}
	return n, nil
}

// countPlainSamples checks that the rest of a plain PNM holds at least want
// samples: decimal numbers separated by whitespace, or single 0/1 digits
// that may run together in a plain PBM.
func countPlainSamples(r *reader, want int64, bits bool) error {
	var got int64
	inNumber := false
	for got < want {
		c, err := r.br.ReadByte()
		if err == io.EOF {
			if inNumber {
				got++
			}
			break
		}
		if err != nil {
			return err
		}
		switch {
		case c >= '0' && c <= '9':
			if bits {
				got++
			} else {
				inNumber = true
			}
		case isSpace(c):
			if inNumber {
				got++
				inNumber = false
			}
		case c == '#':
			if _, err := r.br.ReadSlice('\n'); err != nil && err != io.EOF {
				return err
			}
		default:
			return fmt.Errorf("bad sample byte %q", c)
		}
	}
	if got < want {
		return fmt.Errorf("%w: %d of %d samples", io.ErrUnexpectedEOF, got, want)
	}
	return nil
}
