package main

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"math"
	"math/rand/v2"
)

// fixtures holds the images every workload sends or expects back. They
// are generated from fixed seeds, so two runs use the same bytes.
type fixtures struct {
	photo     []byte // a photo-like JPEG of about 100 KB
	photoGz   []byte // photo compressed with gzip level 6
	bigPNG    []byte // a noisy PNG of about 1 MB that barely compresses
	bigPNGGz  []byte // bigPNG compressed with gzip level 6
	tiny      []byte // a PNG under 1 KB
	bmp20MiB  []byte // an uncompressed 24-bit BMP of about 20 MiB
	photoDims [2]int
	bigDims   [2]int
}

// Size windows the generated fixtures must land in.
const (
	photoMin, photoMax = 95_000, 110_000
	bigMin, bigMax     = 900_000, 1_100_000
	bmpWidth           = 2560
	bmpHeight          = 2730 // 2560 × 2730 × 3 bytes + headers ≈ 20 MiB
)

// makeFixtures generates every fixture. It takes a second or two.
func makeFixtures() (*fixtures, error) {
	fx := &fixtures{}
	var err error
	if fx.photo, fx.photoDims, err = sizedImage("photo JPEG", photoMin, photoMax, 480, 360, encodePhoto); err != nil {
		return nil, err
	}
	if fx.bigPNG, fx.bigDims, err = sizedImage("noisy PNG", bigMin, bigMax, 560, 560, encodeNoisyPNG); err != nil {
		return nil, err
	}
	fx.tiny = tinyPNG(0)
	if len(fx.tiny) >= 1024 {
		return nil, fmt.Errorf("the tiny PNG is %d bytes, not under 1 KB", len(fx.tiny))
	}
	fx.bmp20MiB = makeBMP(bmpWidth, bmpHeight)
	fx.photoGz = gzipBytes(fx.photo)
	fx.bigPNGGz = gzipBytes(fx.bigPNG)
	return fx, nil
}

// sizedImage encodes images of growing or shrinking dimensions until the
// encoded size falls between min and max bytes. Encoded size is roughly
// proportional to the pixel count, so each step scales both sides by the
// square root of the remaining ratio.
func sizedImage(what string, minSize, maxSize, w, h int, encode func(w, h int) ([]byte, error)) ([]byte, [2]int, error) {
	target := float64(minSize+maxSize) / 2
	for range 12 {
		b, err := encode(w, h)
		if err != nil {
			return nil, [2]int{}, fmt.Errorf("%s: %w", what, err)
		}
		if len(b) >= minSize && len(b) <= maxSize {
			return b, [2]int{w, h}, nil
		}
		scale := math.Sqrt(target / float64(len(b)))
		w = max(16, int(math.Round(float64(w)*scale)))
		h = max(16, int(math.Round(float64(h)*scale)))
	}
	return nil, [2]int{}, fmt.Errorf("%s: could not reach a size between %d and %d bytes", what, minSize, maxSize)
}

// encodePhoto draws something with the statistics of a photograph (broad
// smooth gradients, soft shapes, sensor-like noise) and encodes it as a
// JPEG at quality 85.
func encodePhoto(w, h int) ([]byte, error) {
	rng := rand.New(rand.NewPCG(1, 100))
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	fw, fh := float64(w), float64(h)
	for y := range h {
		for x := range w {
			u, v := float64(x)/fw, float64(y)/fh
			r := 120 + 90*math.Sin(3.1*u+1.3*v) + 25*math.Cos(9*u*v)
			g := 110 + 80*math.Sin(2.3*v-0.7*u+0.5) + 20*math.Sin(7*u)
			b := 100 + 70*math.Cos(4.2*u*v+2*v) + 30*math.Sin(5*v)
			n := rng.NormFloat64() * 9
			img.Pix[img.PixOffset(x, y)+0] = clamp8(r + n + rng.NormFloat64()*4)
			img.Pix[img.PixOffset(x, y)+1] = clamp8(g + n + rng.NormFloat64()*4)
			img.Pix[img.PixOffset(x, y)+2] = clamp8(b + n + rng.NormFloat64()*4)
			img.Pix[img.PixOffset(x, y)+3] = 255
		}
	}
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, img, &jpeg.Options{Quality: 85}); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// encodeNoisyPNG encodes an opaque RGB image that is mostly noise, so that
// neither PNG nor gzip can shrink it much.
func encodeNoisyPNG(w, h int) ([]byte, error) {
	rng := rand.New(rand.NewPCG(2, 200))
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			i := img.PixOffset(x, y)
			img.Pix[i+0] = uint8(x*255/w) ^ uint8(rng.Uint32())
			img.Pix[i+1] = uint8(y*255/h) ^ uint8(rng.Uint32())
			img.Pix[i+2] = uint8(rng.Uint32())
			img.Pix[i+3] = 255
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// tinyPNG returns a distinct 8×8 PNG for each n, a few hundred bytes long.
func tinyPNG(n int) []byte {
	return smallPNG(n, 8, 8)
}

// smallPNG returns a distinct w×h noisy PNG for each n.
func smallPNG(n, w, h int) []byte {
	rng := rand.New(rand.NewPCG(3, uint64(n)))
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.SetNRGBA(x, y, color.NRGBA{uint8(rng.Uint32()), uint8(rng.Uint32()), uint8(x * 255 / w), 255})
		}
	}
	// The index itself goes into the first pixel, so no two images are
	// equal even if the generator repeated itself.
	img.SetNRGBA(0, 0, color.NRGBA{uint8(n), uint8(n >> 8), uint8(n >> 16), 255})
	var buf bytes.Buffer
	enc := png.Encoder{CompressionLevel: png.BestSpeed}
	if err := enc.Encode(&buf, img); err != nil {
		panic(err) // encoding into memory cannot fail
	}
	return buf.Bytes()
}

// randomSetPNG is image n of the set spread over by the random GET
// workloads: 32×32 noisy PNGs of about 3 KB.
func randomSetPNG(n int) []byte {
	return smallPNG(n, 32, 32)
}

// makeBMP builds an uncompressed bottom-up 24-bit BMP with a
// BITMAPINFOHEADER, whose header sizes match the data exactly.
func makeBMP(w, h int) []byte {
	rowSize := (w*3 + 3) &^ 3
	dataSize := rowSize * h
	const headerSize = 14 + 40
	b := make([]byte, headerSize+dataSize)
	le := binary.LittleEndian
	b[0], b[1] = 'B', 'M'
	le.PutUint32(b[2:], uint32(len(b)))
	le.PutUint32(b[10:], headerSize)
	le.PutUint32(b[14:], 40)
	le.PutUint32(b[18:], uint32(w))
	le.PutUint32(b[22:], uint32(h))
	le.PutUint16(b[26:], 1)  // planes
	le.PutUint16(b[28:], 24) // bits per pixel
	le.PutUint32(b[30:], 0)  // no compression
	le.PutUint32(b[34:], uint32(dataSize))
	le.PutUint32(b[38:], 2835) // 72 dpi
	le.PutUint32(b[42:], 2835)
	// Gradients with a little noise: compresses about as well as a photo.
	state := uint64(0x9E3779B97F4A7C15)
	for y := range h {
		row := b[headerSize+y*rowSize:]
		for x := range w {
			state ^= state << 13
			state ^= state >> 7
			state ^= state << 17
			noise := uint8(state & 15)
			row[x*3+0] = uint8(x*255/w) + noise
			row[x*3+1] = uint8(y*255/h) + noise>>1
			row[x*3+2] = uint8((x+y)>>3) + uint8(state>>8&7)
		}
	}
	return b
}

func gzipBytes(b []byte) []byte {
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, 6)
	if err != nil {
		panic(err)
	}
	zw.Write(b)
	zw.Close()
	return buf.Bytes()
}

func clamp8(v float64) uint8 {
	switch {
	case v < 0:
		return 0
	case v > 255:
		return 255
	}
	return uint8(v)
}
