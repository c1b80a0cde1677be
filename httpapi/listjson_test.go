package httpapi

import (
	"bytes"
	"encoding/json"
	"testing"
)

// TestWriteJSONStringMatchesEncoder: the direct path writes exactly what
// the encoder would, for every kind of name.
func TestWriteJSONStringMatchesEncoder(t *testing.T) {
	for _, s := range []string{"", "cat.png", "a b.jpg", `q"uote.png`, `back\\slash.png`, "tab\t.png", "é.png", "日本.png", "\u2028.png", "<b>&.png", "~.png", "\x7f.png", "x_Y-0"} {
		var want bytes.Buffer
		enc := json.NewEncoder(&want)
		enc.SetEscapeHTML(false)
		enc.Encode(s)
		want.Truncate(want.Len() - 1)

		var got bytes.Buffer
		genc := json.NewEncoder(&got)
		genc.SetEscapeHTML(false)
		writeJSONString(&got, genc, s)
		if got.String() != want.String() {
			t.Errorf("%q: wrote %s, want %s", s, got.String(), want.String())
		}
	}
}
