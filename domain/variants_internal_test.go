package domain

import (
	"image"
	"math/rand/v2"
	"testing"
)

// TestPlanVariant: for any source and any request, a variant is at least
// 1×1, never larger than the source nor (but for that 1) than the box,
// and shows a part of the source: all of it, except for cover, which
// shows the middle part of the box's shape.
func TestPlanVariant(t *testing.T) {
	for _, c := range []struct {
		sw, sh int
		p      VariantParams
		out    image.Point
		crop   image.Rectangle
	}{
		{400, 300, VariantParams{Width: 100, Fit: FitContain}, image.Pt(100, 75), image.Rect(0, 0, 400, 300)},
		{400, 300, VariantParams{Width: 100, Height: 100, Fit: FitCover}, image.Pt(100, 100), image.Rect(50, 0, 350, 300)},
		{300, 400, VariantParams{Width: 100, Height: 100, Fit: FitCover}, image.Pt(100, 100), image.Rect(0, 50, 300, 350)},
		{400, 300, VariantParams{Width: 800, Height: 100, Fit: FitCover}, image.Pt(400, 50), image.Rect(0, 125, 400, 175)},
		{400, 300, VariantParams{Width: 1000, Height: 1000, Fit: FitFill}, image.Pt(400, 300), image.Rect(0, 0, 400, 300)},
		{10000, 1, VariantParams{Width: 100, Fit: FitContain}, image.Pt(100, 1), image.Rect(0, 0, 10000, 1)},
		{1, 1, VariantParams{Width: 5, Height: 5, Fit: FitCover}, image.Pt(1, 1), image.Rect(0, 0, 1, 1)},
	} {
		out, crop := planVariant(c.sw, c.sh, c.p)
		if out != c.out || crop != c.crop {
			t.Errorf("%dx%d %+v: %v of %v, want %v of %v", c.sw, c.sh, c.p, out, crop, c.out, c.crop)
		}
	}
	rng := rand.New(rand.NewPCG(5, 6))
	for range 20000 {
		sw, sh := 1+rng.IntN(5000), 1+rng.IntN(5000)
		p := VariantParams{Width: rng.IntN(3000), Height: rng.IntN(3000), Fit: []Fit{FitContain, FitCover, FitFill}[rng.IntN(3)]}
		if p.Width == 0 && p.Height == 0 {
			continue
		}
		if p.Width == 0 || p.Height == 0 {
			p.Fit = FitContain
		}
		out, crop := planVariant(sw, sh, p)
		full := image.Rect(0, 0, sw, sh)
		switch {
		case out.X < 1 || out.Y < 1 || out.X > sw || out.Y > sh:
			t.Fatalf("%dx%d %+v: %v", sw, sh, p, out)
		case p.Width > 0 && out.X > max(p.Width, 1) || p.Height > 0 && out.Y > max(p.Height, 1):
			t.Fatalf("%dx%d %+v: %v, larger than the box", sw, sh, p, out)
		case crop.Empty() || !crop.In(full):
			t.Fatalf("%dx%d %+v: crop %v", sw, sh, p, crop)
		case p.Fit != FitCover && crop != full:
			t.Fatalf("%dx%d %+v: crop %v for %s", sw, sh, p, crop, p.Fit)
		case p.Fit == FitCover && crop.Dx() != sw && crop.Dy() != sh:
			t.Fatalf("%dx%d %+v: crop %v touches neither side", sw, sh, p, crop)
		}
	}
}
