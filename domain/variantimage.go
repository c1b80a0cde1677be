package domain

import (
	"bytes"
	"fmt"
	"image"
	"image/gif"
	"image/jpeg"
	"image/png"
	"io"
	"math"

	"golang.org/x/image/bmp"
	"golang.org/x/image/draw"
	"golang.org/x/image/tiff"
	"golang.org/x/image/webp"
)

// The pixels of variants: decoding, resizing, encoding. Nothing here
// touches the store.

// variantDecoders are the formats variants can be made of, by imagetype
// name: those Go and golang.org/x/image decode.
var variantDecoders = map[string]struct {
	config func(io.Reader) (image.Config, error)
	decode func(io.Reader) (image.Image, error)
}{
	"jpeg": {jpeg.DecodeConfig, jpeg.Decode},
	"png":  {png.DecodeConfig, png.Decode},
	"gif":  {gif.DecodeConfig, gif.Decode}, // the first frame
	"bmp":  {bmp.DecodeConfig, bmp.Decode},
	"tiff": {tiff.DecodeConfig, tiff.Decode},
	"webp": {webp.DecodeConfig, webp.Decode},
}

// Resampling: measured on a 4000×3000 photo decoded from JPEG, on two
// cores (BenchmarkVariantScale), against Catmull-Rom from the full image
// (the reference, PSNR in dB on that photo / on a zone plate, where
// aliasing shows most):
//
//	                        256×192          1024×768         2048×1536
//	CatmullRom              730 ms           770 ms           1.08 s
//	ApproxBiLinear            3 ms (23/11)     34 ms (26/15)    151 ms (29/30)
//	halve, then CatmullRom  250 ms (48/39)    300 ms (46/41)    920 ms (no halving)
//
// ApproxBiLinear reads 4 source pixels per variant pixel whatever the
// reduction: fast, but thumbnails alias badly (moiré, jagged edges).
// Catmull-Rom looks at every source pixel and is sharp, but slow on large
// reductions. Variants take the third way: the source is halved with
// ApproxBiLinear, which at exactly half size is an exact 2×2 average (no
// aliasing), while it is at least twice the variant's size, and
// Catmull-Rom makes the last step: within a fraction of a decibel of
// Catmull-Rom alone, two to three times faster for thumbnails.
var variantScaler draw.Interpolator = draw.CatmullRom

// variantJPEGQuality is the quality of JPEG variants.
const variantJPEGQuality = 85

// renderVariant makes the variant p of an image, given its bytes and
// imagetype name. A *VariantUnavailableError says why it cannot.
func renderVariant(data []byte, typ string, p VariantParams, maxPixels int64) ([]byte, error) {
	src, err := decodeVariantSource(data, typ, maxPixels)
	if err != nil {
		return nil, err
	}
	return encodeVariant(resizeVariant(src, p), p.Format)
}

// decodeVariantSource decodes an image for a variant, after its header
// showed it within maxPixels (0 for no limit): the limit holds here too,
// whatever it was when the image was stored. A GIF gives its first frame,
// on its logical screen.
func decodeVariantSource(data []byte, typ string, maxPixels int64) (m image.Image, err error) {
	dec, ok := variantDecoders[typ]
	if !ok {
		return nil, &VariantUnavailableError{Reason: fmt.Sprintf("no decoder for %s images", typ)}
	}
	defer func() {
		if v := recover(); v != nil { // a decoder's bug must not take the server down
			m, err = nil, &VariantUnavailableError{Reason: fmt.Sprintf("the %s decoder failed: %v", typ, v)}
		}
	}()
	cfg, err := dec.config(bytes.NewReader(data))
	if err != nil {
		return nil, &VariantUnavailableError{Reason: fmt.Sprintf("its header cannot be decoded: %v", err)}
	}
	w, h := int64(cfg.Width), int64(cfg.Height)
	if w <= 0 || h <= 0 {
		return nil, &VariantUnavailableError{Reason: fmt.Sprintf("it claims %dx%d pixels", w, h)}
	}
	if maxPixels > 0 && w*h > maxPixels {
		return nil, &VariantUnavailableError{Reason: fmt.Sprintf("%dx%d is %d pixels, more than the %d allowed", w, h, w*h, maxPixels)}
	}
	m, err = dec.decode(bytes.NewReader(data))
	if err != nil {
		return nil, &VariantUnavailableError{Reason: fmt.Sprintf("it cannot be decoded: %v", err)}
	}
	screen := image.Rect(0, 0, cfg.Width, cfg.Height)
	if typ == "gif" && m.Bounds() != screen && m.Bounds().In(screen) {
		canvas := image.NewNRGBA(screen)
		draw.Draw(canvas, m.Bounds(), m, m.Bounds().Min, draw.Src)
		m = canvas
	}
	if m.Bounds().Empty() {
		return nil, &VariantUnavailableError{Reason: "it has no pixels"}
	}
	return m, nil
}

// planVariant decides, for a source of sw×sh pixels, the size of the
// variant p and the part of the source it shows. A variant is never
// larger than the source: asked for more, it keeps the source's size (for
// cover, the largest part of the source of the box's shape).
func planVariant(sw, sh int, p VariantParams) (out image.Point, crop image.Rectangle) {
	full := image.Rect(0, 0, sw, sh)
	w, h := p.Width, p.Height
	if w > 0 && h > 0 {
		switch p.Fit {
		case FitFill:
			return image.Pt(min(w, sw), min(h, sh)), full
		case FitCover:
			// The largest middle part of the source with the box's
			// proportions.
			cw, ch := sw, sh
			if int64(sw)*int64(h) > int64(sh)*int64(w) {
				cw = max(1, int(math.Round(float64(sh)*float64(w)/float64(h))))
			} else {
				ch = max(1, int(math.Round(float64(sw)*float64(h)/float64(w))))
			}
			x0, y0 := (sw-cw)/2, (sh-ch)/2
			crop = image.Rect(x0, y0, x0+cw, y0+ch)
			if w > cw || h > ch {
				return image.Pt(cw, ch), crop
			}
			return image.Pt(w, h), crop
		}
	}
	scale := 1.0
	if w > 0 {
		scale = min(scale, float64(w)/float64(sw))
	}
	if h > 0 {
		scale = min(scale, float64(h)/float64(sh))
	}
	ow := max(1, min(sw, int(math.Round(float64(sw)*scale))))
	oh := max(1, min(sh, int(math.Round(float64(sh)*scale))))
	return image.Pt(ow, oh), full
}

// resizeVariant draws the part of src that p shows at the variant's size.
func resizeVariant(src image.Image, p VariantParams) *image.RGBA {
	b := src.Bounds()
	out, crop := planVariant(b.Dx(), b.Dy(), p)
	crop = crop.Add(b.Min)
	dst := image.NewRGBA(image.Rect(0, 0, out.X, out.Y))
	if crop.Size() == out {
		draw.Draw(dst, dst.Bounds(), src, crop.Min, draw.Src)
		return dst
	}
	for crop.Dx() >= 2*out.X && crop.Dy() >= 2*out.Y {
		half := image.NewRGBA(image.Rect(0, 0, crop.Dx()/2, crop.Dy()/2))
		draw.ApproxBiLinear.Scale(half, half.Bounds(), src, crop, draw.Src, nil)
		src, crop = half, half.Bounds()
	}
	variantScaler.Scale(dst, dst.Bounds(), src, crop, draw.Src, nil)
	return dst
}

// encodeVariant encodes m as a JPEG or a PNG. JPEG has no transparency:
// a variant with some is laid on white first (black, what transparent
// pixels would otherwise become, is rarely what was meant).
func encodeVariant(m *image.RGBA, format string) ([]byte, error) {
	var buf bytes.Buffer
	var err error
	switch format {
	case "jpeg":
		if !m.Opaque() {
			flat := image.NewRGBA(m.Bounds())
			draw.Draw(flat, flat.Bounds(), image.White, image.Point{}, draw.Src)
			draw.Draw(flat, flat.Bounds(), m, m.Bounds().Min, draw.Over)
			m = flat
		}
		err = jpeg.Encode(&buf, m, &jpeg.Options{Quality: variantJPEGQuality})
	case "png":
		err = (&png.Encoder{CompressionLevel: png.DefaultCompression}).Encode(&buf, m)
	default:
		err = fmt.Errorf("no encoder for %q", format)
	}
	if err != nil {
		return nil, fmt.Errorf("encode the variant: %w", err)
	}
	return buf.Bytes(), nil
}
