//go:build ignore

// gen writes the pixel-bomb fixtures in this folder: small, well-formed
// headers that claim about 10^10 pixels. Run it with "go run gen.go" here.
package main

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"os"
)

const W, H = 100000, 100000

func main() {
	files := map[string][]byte{
		"bomb.png": png(), "bomb.jpg": jpg(), "bomb.gif": gif(), "bomb.bmp": bmp(),
		"bomb.tif": tif(), "bomb.webp": webp(), "bomb.ppm": ppm(), "bomb.pbm": []byte("P4\n100000 100000\n\x00\x00"),
		"bomb.pgm": []byte("P5 100000\n100000 255\n\x00\x00"), "bomb.ras": ras(),
		"bomb.xbm": []byte("#define bomb_width 100000\n#define bomb_height 100000\nstatic char bomb_bits[] = {\n0x00, };\n"),
		"bomb.sgi": sgi(), "bomb.exr": exr(),
	}
	for name, b := range files {
		if err := os.WriteFile(name, b, 0o644); err != nil {
			panic(err)
		}
	}
}

func le(vs ...any) []byte {
	var b bytes.Buffer
	for _, v := range vs {
		binary.Write(&b, binary.LittleEndian, v)
	}
	return b.Bytes()
}

func be(vs ...any) []byte {
	var b bytes.Buffer
	for _, v := range vs {
		binary.Write(&b, binary.BigEndian, v)
	}
	return b.Bytes()
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func zeros(n int) []byte { return make([]byte, n) }

func png() []byte {
	chunk := func(typ string, data []byte) []byte {
		td := cat([]byte(typ), data)
		return cat(be(uint32(len(data))), td, be(crc32.ChecksumIEEE(td)))
	}
	// A stored (uncompressed) zlib stream of zeros is enough for a header test.
	idat := cat([]byte{0x78, 0x01, 0x01, 0x00, 0x01, 0xff, 0xfe}, zeros(256), be(uint32(1)))
	return cat([]byte("\x89PNG\r\n\x1a\n"), chunk("IHDR", be(uint32(W), uint32(H), uint8(8), uint8(2), uint8(0), uint8(0), uint8(0))),
		chunk("IDAT", idat), chunk("IEND", nil))
}

func jpg() []byte {
	app0 := cat([]byte{0xff, 0xe0}, be(uint16(16)), []byte("JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"))
	sof := cat([]byte{0xff, 0xc0}, be(uint16(17), uint8(8), uint16(60000), uint16(60000), uint8(3)),
		[]byte{1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1})
	sos := cat([]byte{0xff, 0xda}, be(uint16(12)), []byte{3, 1, 0, 2, 0x11, 3, 0x11, 0, 0x3f, 0})
	return cat([]byte{0xff, 0xd8}, app0, sof, sos, zeros(64), []byte{0xff, 0xd9})
}

func gif() []byte {
	return cat([]byte("GIF89a"), le(uint16(65535), uint16(65535), uint8(0), uint8(0), uint8(0)),
		[]byte{0x2c}, le(uint16(0), uint16(0), uint16(65535), uint16(65535), uint8(0)), []byte{2, 2, 0x44, 1, 0, 0x3b})
}

func bmp() []byte {
	info := le(uint32(40), int32(W), int32(H), uint16(1), uint16(24), uint32(0), uint32(0), int32(2835), int32(2835), uint32(0), uint32(0))
	return cat([]byte("BM"), le(uint32(54+16), uint16(0), uint16(0), uint32(54)), info, zeros(16))
}

func tif() []byte {
	type e struct {
		tag, typ uint16
		n, v     uint32
	}
	entries := []e{{256, 4, 1, W}, {257, 4, 1, H}, {258, 3, 1, 8}, {259, 3, 1, 1}, {262, 3, 1, 1},
		{273, 4, 1, 200}, {277, 3, 1, 1}, {278, 4, 1, H}, {279, 4, 1, 0xffffffff}}
	ifd := le(uint16(len(entries)))
	for _, x := range entries {
		ifd = cat(ifd, le(x.tag, x.typ, x.n, x.v))
	}
	return cat([]byte("II*\x00"), le(uint32(8)), ifd, zeros(4), zeros(64))
}

func webp() []byte {
	u24 := func(v int) []byte { return []byte{byte(v), byte(v >> 8), byte(v >> 16)} }
	vp8x := cat([]byte("VP8X"), le(uint32(10)), zeros(4), u24(W-1), u24(H-1))
	body := cat([]byte("WEBP"), vp8x, zeros(32))
	return cat([]byte("RIFF"), le(uint32(len(body))), body)
}

func ppm() []byte { return cat([]byte("P6\n100000 100000\n255\n"), zeros(64)) }

func ras() []byte {
	return cat(be(uint32(0x59a66a95), uint32(W), uint32(H), uint32(24), uint32(0xffffffff), uint32(1), uint32(0), uint32(0)), zeros(64))
}

func sgi() []byte {
	h := be(uint16(474), uint8(0), uint8(1), uint16(3), uint16(65535), uint16(65535), uint16(3))
	return cat(h, zeros(512-len(h)), zeros(64))
}

func exr() []byte {
	attr := func(name, typ string, v []byte) []byte {
		return cat([]byte(name+"\x00"+typ+"\x00"), le(int32(len(v))), v)
	}
	win := le(int32(0), int32(0), int32(W-1), int32(H-1))
	hdr := cat(
		attr("channels", "chlist", cat([]byte("R\x00"), le(int32(1), uint8(0), uint8(0), uint8(0), uint8(0), int32(1), int32(1)), []byte{0})),
		attr("compression", "compression", []byte{0}),
		attr("dataWindow", "box2i", win),
		attr("displayWindow", "box2i", win),
		attr("lineOrder", "lineOrder", []byte{0}),
		attr("pixelAspectRatio", "float", le(float32(1))),
		attr("screenWindowCenter", "v2f", le(float32(0), float32(0))),
		attr("screenWindowWidth", "float", le(float32(1))),
		[]byte{0})
	return cat([]byte{0x76, 0x2f, 0x31, 0x01}, le(uint32(2)), hdr, zeros(64))
}
