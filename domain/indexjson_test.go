package domain

import (
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestIndexJSONReadsBack: what appendIndexJSON writes is valid JSON that
// encoding/json reads back into the same images, whatever the names hold
// (quotes, backslashes, control characters, any script, invalid UTF-8).
func TestIndexJSONReadsBack(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	pieces := []string{"a", "Z", "0", ".", " ", `"`, `\`, "\n", "\t", "\x00", "\x1f", "\x7f", "é", "日本", "😀", "\u2028", "<", ">", "&", "\xff", "\xe2\x82", "/"}
	base := time.Date(2026, 11, 25, 23, 59, 58, 123456789, time.UTC)
	var imgs []Image
	for i := range 500 {
		var name strings.Builder
		for range rng.IntN(12) {
			name.WriteString(pieces[rng.IntN(len(pieces))])
		}
		imgs = append(imgs, Image{
			ID: NewID(), Name: name.String(), Type: "png",
			Size: rng.Int64N(1 << 40), StoredSize: rng.Int64N(1 << 40), SHA256: strings.Repeat("ab", 32),
			Width: rng.Int64N(1 << 20), Height: rng.Int64N(1 << 20),
			Created: base.Add(time.Duration(i) * time.Microsecond), Updated: base.Add(time.Duration(i) * time.Second).In(time.FixedZone("x", 3600)),
			Blob: newBlobName(),
		})
	}
	for _, list := range [][]Image{nil, {}, imgs[:1], imgs} {
		out := appendIndexJSON(nil, list)
		if !json.Valid(out) {
			t.Fatalf("invalid JSON: %.200s", out)
		}
		var got index
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatal(err)
		}
		var want index
		std, _ := json.Marshal(index{Images: list})
		if err := json.Unmarshal(std, &want); err != nil {
			t.Fatal(err)
		}
		if len(got.Images) != len(want.Images) {
			t.Fatalf("%d images read back, want %d", len(got.Images), len(want.Images))
		}
		for i := range want.Images {
			g, w := got.Images[i], want.Images[i]
			if !g.Created.Equal(w.Created) || !g.Updated.Equal(w.Updated) {
				t.Errorf("image %d: times %v %v, want %v %v", i, g.Created, g.Updated, w.Created, w.Updated)
			}
			g.Created, g.Updated, w.Created, w.Updated = time.Time{}, time.Time{}, time.Time{}, time.Time{}
			if !reflect.DeepEqual(g, w) {
				t.Errorf("image %d read back as %+v, want %+v (as encoding/json writes it)", i, g, w)
			}
		}
	}
}

func BenchmarkIndexJSON(b *testing.B) {
	imgs := make([]Image, 10_000)
	now := time.Now().UTC()
	for i := range imgs {
		imgs[i] = Image{ID: NewID(), Name: "holiday-photo-" + NewID() + ".jpg", Type: "jpeg", Size: 102400, StoredSize: 101000,
			SHA256: strings.Repeat("ab", 32), Width: 1024, Height: 768, Created: now, Updated: now, Blob: newBlobName()}
	}
	b.Run("append", func(b *testing.B) {
		var buf []byte
		for b.Loop() {
			buf = appendIndexJSON(buf[:0], imgs)
		}
	})
	b.Run("encoding/json", func(b *testing.B) {
		for b.Loop() {
			json.Marshal(index{Images: imgs})
		}
	})
}
