package domain

import (
	"bytes"
	"image"
	"image/color"
	"image/jpeg"
	"math/rand/v2"
	"testing"

	"golang.org/x/image/draw"
)

// benchPhoto is a photo-like image of w×h pixels as jpeg.Decode gives it
// (YCbCr).
func benchPhoto(tb testing.TB, w, h int) image.Image {
	tb.Helper()
	m := image.NewRGBA(image.Rect(0, 0, w, h))
	rng := rand.New(rand.NewPCG(3, 4))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			n := uint8(rng.IntN(32))
			m.SetRGBA(x, y, color.RGBA{uint8(x*255/w) + n, uint8(y*255/h) + n, uint8((x + y) % 256), 255})
		}
	}
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, m, &jpeg.Options{Quality: 90}); err != nil {
		tb.Fatal(err)
	}
	d, err := jpeg.Decode(&buf)
	if err != nil {
		tb.Fatal(err)
	}
	return d
}

// BenchmarkVariantScale compares the ways of resizing a 12-megapixel photo
// that variantScaler's comment weighs: each kernel from the full image,
// and what resizeVariant does.
func BenchmarkVariantScale(b *testing.B) {
	src := benchPhoto(b, 4000, 3000)
	for _, size := range []image.Point{{256, 192}, {1024, 768}, {2048, 1536}} {
		for _, k := range []struct {
			name string
			s    draw.Interpolator
		}{{"CatmullRom", draw.CatmullRom}, {"ApproxBiLinear", draw.ApproxBiLinear}} {
			b.Run(k.name+"/"+size.String(), func(b *testing.B) {
				for b.Loop() {
					dst := image.NewRGBA(image.Rect(0, 0, size.X, size.Y))
					k.s.Scale(dst, dst.Bounds(), src, src.Bounds(), draw.Src, nil)
				}
			})
		}
		b.Run("resizeVariant/"+size.String(), func(b *testing.B) {
			for b.Loop() {
				resizeVariant(src, VariantParams{Width: size.X, Height: size.Y, Fit: FitFill})
			}
		})
	}
}
