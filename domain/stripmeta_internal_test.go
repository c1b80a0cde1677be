package domain

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"testing/iotest"
)

// ---- JPEG segments for the tests

// segment returns a JPEG segment: the marker, the length, the payload.
func segment(marker byte, payload []byte) []byte {
	b := []byte{0xff, marker, 0, 0}
	binary.BigEndian.PutUint16(b[2:], uint16(len(payload)+2))
	return append(b, payload...)
}

// exifGPS is the payload of an APP1 Exif segment whose IFD0 names the
// camera's make and points to a GPS IFD holding a latitude and a
// longitude (48°51'29.58"N 2°17'40.12"E), as a phone writes one.
func exifGPS() []byte {
	be := binary.BigEndian
	t := []byte("MM\x00\x2a\x00\x00\x00\x08") // TIFF header, IFD0 at 8
	entry := func(tag, typ uint16, count, value uint32) {
		t = be.AppendUint16(t, tag)
		t = be.AppendUint16(t, typ)
		t = be.AppendUint32(t, count)
		t = be.AppendUint32(t, value)
	}
	t = be.AppendUint16(t, 2)
	entry(0x010f, 2, 6, 38)       // Make, at 38
	entry(0x8825, 4, 1, 44)       // GPSInfo IFD, at 44
	t = be.AppendUint32(t, 0)     // no IFD1
	t = append(t, "Canon\x00"...) // 38..44
	t = be.AppendUint16(t, 4)
	entry(0x0001, 2, 2, 'N'<<24) // GPSLatitudeRef "N"
	entry(0x0002, 5, 3, 98)      // GPSLatitude, at 98
	entry(0x0003, 2, 2, 'E'<<24) // GPSLongitudeRef "E"
	entry(0x0004, 5, 3, 122)     // GPSLongitude, at 122
	t = be.AppendUint32(t, 0)
	for _, r := range []uint32{48, 1, 51, 1, 2958, 100, 2, 1, 17, 1, 4012, 100} {
		t = be.AppendUint32(t, r)
	}
	return append([]byte("Exif\x00\x00"), t...)
}

// withMetadata returns the JPEG base (which starts with SOI and APP0) with
// metadata segments after its APP0, as cameras and editors write them:
// Exif with GPS, an ICC profile, XMP, IPTC, a comment, Adobe's APP14.
// It also returns what stripping must leave: base with the ICC profile
// and APP14 alone added.
func withMetadata(t testing.TB, base []byte) (in, want []byte) {
	t.Helper()
	if len(base) < 4 || base[2] != 0xff || base[3] != 0xe0 {
		t.Fatal("the base JPEG does not start with SOI and APP0")
	}
	app0End := 4 + int(binary.BigEndian.Uint16(base[4:]))
	icc := segment(0xe2, append([]byte("ICC_PROFILE\x00\x01\x01"), bytes.Repeat([]byte{0x42}, 64)...))
	adobe := segment(0xee, []byte("Adobe\x00\x64\x00\x00\x00\x00\x01"))
	for _, s := range [][]byte{
		segment(0xe1, exifGPS()),
		icc,
		segment(0xe1, []byte("http://ns.adobe.com/xap/1.0/\x00<x:xmpmeta>GPS</x:xmpmeta>")),
		segment(0xed, []byte("Photoshop 3.0\x008BIM\x04\x04\x00\x00\x00\x00\x00\x05caption")),
		segment(0xfe, []byte("a comment")),
		adobe,
	} {
		in = append(in, s...)
	}
	in = append(append(append([]byte{}, base[:app0End]...), in...), base[app0End:]...)
	want = append(append(append(append([]byte{}, base[:app0End]...), icc...), adobe...), base[app0End:]...)
	return in, want
}

func testFixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "imagetype", "testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func stripAll(t testing.TB, r io.Reader) []byte {
	t.Helper()
	out, err := io.ReadAll(stripJPEGMetadata(r))
	if err != nil {
		t.Fatalf("reading the filter: %v", err)
	}
	return out
}

// ---- a reference: the same rules, on bytes in memory

// refRemovedSpans returns the parts of in that stripping removes: whole
// APP1, APP13 and COM segments (a truncated one to the end), before the
// first scan, while the segment structure holds.
func refRemovedSpans(in []byte) [][2]int {
	if len(in) < 2 || in[0] != 0xff || in[1] != 0xd8 {
		return nil
	}
	var spans [][2]int
	i := 2
	for i < len(in) && in[i] == 0xff {
		j := i
		for j < len(in) && in[j] == 0xff {
			j++
		}
		if j-i > maxFillBytes || j >= len(in) {
			break
		}
		code := in[j]
		if code == 0x00 || code == 0xd8 || code == 0xd9 || code == 0xda {
			break
		}
		if code >= 0xd0 && code <= 0xd7 || code == 0x01 {
			i = j + 1
			continue
		}
		if j+2 >= len(in) {
			break
		}
		length := int(in[j+1])<<8 | int(in[j+2])
		if length < 2 {
			break
		}
		end := j + 1 + length
		if removedSegment(code) {
			spans = append(spans, [2]int{i, min(end, len(in))})
		}
		i = end
	}
	return spans
}

func refStrip(in []byte) []byte {
	var out []byte
	last := 0
	for _, s := range refRemovedSpans(in) {
		out = append(out, in[last:s[0]]...)
		last = s[1]
	}
	return append(out, in[last:]...)
}

// chunkReader serves its data at most n bytes at a time.
type chunkReader struct {
	data []byte
	n    int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	k := min(len(p), c.n, len(c.data))
	copy(p, c.data[:k])
	c.data = c.data[k:]
	return k, nil
}

// ---- tests

// TestStripJPEGMetadata: Exif (with its GPS block), XMP, IPTC and the
// comment go; APP0, the ICC profile, APP14 and everything from the scan on
// stay, byte for byte; the pixels are those of the original.
func TestStripJPEGMetadata(t *testing.T) {
	for _, name := range []string{"jpeg-baseline.jpg", "jpeg-progressive.jpg"} {
		base := testFixture(t, name)
		in, want := withMetadata(t, base)
		got := stripAll(t, bytes.NewReader(in))
		if !bytes.Equal(got, want) {
			t.Errorf("%s: stripped to %d bytes, want the %d bytes of the original with its ICC profile and APP14", name, len(got), len(want))
		}
		for _, gone := range []string{"Exif", "xap/1.0", "8BIM", "a comment", "Canon"} {
			if bytes.Contains(got, []byte(gone)) {
				t.Errorf("%s: %q is still there", name, gone)
			}
		}
		if !bytes.Contains(got, []byte("ICC_PROFILE")) {
			t.Errorf("%s: the ICC profile was removed", name)
		}
		// The same however the input arrives, and however it is read.
		for _, r := range []io.Reader{
			iotest.OneByteReader(bytes.NewReader(in)),
			iotest.HalfReader(bytes.NewReader(in)),
			&chunkReader{data: in, n: 7},
		} {
			if got := stripAll(t, iotest.OneByteReader(stripJPEGMetadata(r))); !bytes.Equal(got, want) {
				t.Errorf("%s: read in small pieces, a different result", name)
			}
		}
		if got := stripAll(t, bytes.NewReader(want)); !bytes.Equal(got, want) {
			t.Errorf("%s: stripping a stripped file changed it", name)
		}
	}
}

// TestStripPassesOtherFormats: anything but a JPEG reads unchanged.
func TestStripPassesOtherFormats(t *testing.T) {
	entries, err := os.ReadDir(filepath.Join("..", "imagetype", "testdata"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.IsDir() || filepath.Ext(e.Name()) == ".jpg" {
			continue
		}
		in := testFixture(t, e.Name())
		if got := stripAll(t, bytes.NewReader(in)); !bytes.Equal(got, in) {
			t.Errorf("%s: changed by the filter", e.Name())
		}
	}
	for _, in := range [][]byte{nil, {0xff}, {0xff, 0xd8}, []byte("not an image")} {
		if got := stripAll(t, bytes.NewReader(in)); !bytes.Equal(got, in) {
			t.Errorf("%q: became %q", in, got)
		}
	}
}

// TestStripMalformed: a JPEG whose structure breaks is passed on unchanged
// from where it breaks, and never read past its end or looped on.
func TestStripMalformed(t *testing.T) {
	base := testFixture(t, "jpeg-baseline.jpg")
	in, _ := withMetadata(t, base)
	soi := []byte{0xff, 0xd8}
	cases := map[string][]byte{
		"garbage after SOI":        append(append([]byte{}, soi...), "garbage"...),
		"length 0":                 append(append([]byte{}, soi...), 0xff, 0xe1, 0x00, 0x00, 'E', 'x'),
		"length 1":                 append(append([]byte{}, soi...), 0xff, 0xfe, 0x00, 0x01),
		"stuffed zero":             append(append([]byte{}, soi...), 0xff, 0x00, 0xff, 0xe1, 0, 4, 1, 2),
		"second SOI":               append(append([]byte{}, soi...), 0xff, 0xd8, 0xff, 0xe1, 0, 4, 1, 2),
		"many fill bytes":          append(append(append([]byte{}, soi...), bytes.Repeat([]byte{0xff}, 100)...), 0xe1, 0, 4, 1, 2),
		"APP1 past the end":        append(append([]byte{}, soi...), 0xff, 0xe1, 0xff, 0xff, 'E', 'x', 'i', 'f'),
		"marker at the end":        append(append([]byte{}, soi...), 0xff, 0xe1),
		"fill bytes at the end":    append(append([]byte{}, soi...), 0xff, 0xff, 0xff),
		"half a length":            append(append([]byte{}, soi...), 0xff, 0xe0, 0x00),
		"EOI before any scan":      append(append([]byte{}, soi...), 0xff, 0xd9, 0xff, 0xe1, 0, 4, 1, 2),
		"restart marker":           append(append([]byte{}, soi...), 0xff, 0xd0, 0xff, 0xfe, 0, 3, 'c'),
		"metadata after the scans": append(append([]byte{}, base...), segment(0xe1, exifGPS())...),
	}
	for n := range in {
		cases["truncated at "+strconv.Itoa(n)] = in[:n]
	}
	for name, in := range cases {
		got := stripAll(t, bytes.NewReader(in))
		if want := refStrip(in); !bytes.Equal(got, want) {
			t.Errorf("%s: got % x, want % x", name, got, want)
		}
	}
}

// TestStripPassesErrors: the input's errors reach the reader of the
// filter, after the bytes before them, wherever they happen.
func TestStripPassesErrors(t *testing.T) {
	in, _ := withMetadata(t, testFixture(t, "jpeg-baseline.jpg"))
	errBroken := errors.New("connection reset")
	for n := 0; n <= len(in); n += 3 {
		r := io.MultiReader(&chunkReader{data: in[:n], n: 5}, iotest.ErrReader(errBroken))
		got, err := io.ReadAll(stripJPEGMetadata(r))
		if !errors.Is(err, errBroken) {
			t.Fatalf("input failing after %d bytes: got error %v, want %v", n, err, errBroken)
		}
		if want := refStrip(in[:n]); !bytes.HasPrefix(want, got) {
			t.Fatalf("input failing after %d bytes: %d bytes out, not a prefix of what the %d bytes before give", n, len(got), n)
		}
	}
}

// FuzzStripJPEGMetadata: whatever the input and however it arrives, the
// filter does not panic or loop, and its output is the input with whole
// APP1, APP13 and COM segments removed from before the first scan and
// nothing else: every byte it keeps is in order, the segment stream stays
// whole, and stripping again changes nothing. The seeds are the fixtures,
// with and without metadata.
func FuzzStripJPEGMetadata(f *testing.F) {
	entries, err := os.ReadDir(filepath.Join("..", "imagetype", "testdata"))
	if err != nil {
		f.Fatal(err)
	}
	for _, e := range entries {
		if !e.IsDir() {
			f.Add(testFixture(f, e.Name()), uint8(0))
		}
	}
	for _, name := range []string{"jpeg-baseline.jpg", "jpeg-progressive.jpg"} {
		in, want := withMetadata(f, testFixture(f, name))
		f.Add(in, uint8(3))
		f.Add(want, uint8(200))
	}
	f.Fuzz(func(t *testing.T, in []byte, chunk uint8) {
		r := &chunkReader{data: in, n: int(chunk)%64 + 1}
		var out []byte
		buf := make([]byte, int(chunk)%13+1)
		fr := stripJPEGMetadata(r)
		for reads := 0; ; reads++ {
			if reads > 4*len(in)+16 {
				t.Fatalf("no end after %d reads of a %d-byte input", reads, len(in))
			}
			n, err := fr.Read(buf)
			out = append(out, buf[:n]...)
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("error %v from an input that has none", err)
			}
		}
		want := refStrip(in)
		if !bytes.Equal(out, want) {
			t.Fatalf("got %d bytes, want %d:\n got % x\nwant % x", len(out), len(want), out, want)
		}
		// What was removed: whole segments of the removed kinds, each
		// starting at a marker and as long as it says (or to the end).
		for _, s := range refRemovedSpans(in) {
			seg := in[s[0]:s[1]]
			k := 0
			for k < len(seg) && seg[k] == 0xff {
				k++
			}
			if k == 0 || k >= len(seg) || !removedSegment(seg[k]) {
				t.Fatalf("removed % x, not a metadata segment", seg)
			}
			if k+2 < len(seg) {
				if l := int(seg[k+1])<<8 | int(seg[k+2]); s[1] != len(in) && l != len(seg)-k-1 {
					t.Fatalf("removed %d bytes of a segment of length %d", len(seg), l)
				}
			}
		}
		if len(in) >= 2 && (in[0] != 0xff || in[1] != 0xd8) && !bytes.Equal(out, in) {
			t.Fatal("a stream that is not a JPEG was changed")
		}
		if again := stripAll(t, bytes.NewReader(out)); !bytes.Equal(again, out) {
			t.Fatal("stripping the output again changed it")
		}
	})
}
