package imagetype

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// parseXBM reads the "#define NAME_width W" and "#define NAME_height H"
// lines of an X bitmap, then requires the C array that follows to be closed.
func parseXBM(r *reader, dims func(w, h int64) error) (int64, error) {
	var vals [2]int64
	for i, suffix := range []string{"_width", "_height"} {
		line, err := r.br.ReadSlice('\n')
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return 0, err // ErrBufferFull for an absurdly long line
		}
		f := bytes.Fields(line)
		if len(f) != 3 || string(f[0]) != "#define" || !bytes.HasSuffix(f[1], []byte(suffix)) {
			return 0, fmt.Errorf("expected a %s line", suffix)
		}
		if vals[i], err = strconv.ParseInt(string(f[2]), 10, 64); err != nil {
			return 0, fmt.Errorf("bad %s: %v", suffix, err)
		}
	}
	if err := dims(vals[0], vals[1]); err != nil {
		return 0, err
	}
	// The bits: an array initialiser "{ 0x00, ... }".
	for _, want := range []byte{'{', '}'} {
		if _, err := r.br.ReadSlice(want); err != nil {
			for err == bufio.ErrBufferFull {
				_, err = r.br.ReadSlice(want)
			}
			if err != nil {
				return 0, errors.Join(io.ErrUnexpectedEOF, fmt.Errorf("no %q", want))
			}
		}
	}
	return 0, nil
}
