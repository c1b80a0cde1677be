package httpapi

import (
	"mime"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
)

// splitDisposition cuts a header built by contentDisposition into its
// "attachment; filename=..." head and the raw value of filename*. The
// filename* value never holds a ';' (it is percent-encoded), so the last
// "; filename*=" is the separator whatever the name.
func splitDisposition(t *testing.T, h string) (head, extValue string) {
	t.Helper()
	i := strings.LastIndex(h, "; filename*=")
	if i < 0 {
		t.Fatalf("header %q has no filename* parameter", h)
	}
	return h[:i], h[i+len("; filename*="):]
}

func TestContentDisposition(t *testing.T) {
	tests := []struct {
		name         string
		wantFallback string // the filename parameter alone, as a client without RFC 8187 reads it
		wantExt      string // the raw filename* value
	}{
		{"photo.png", "photo.png", "UTF-8''photo.png"},
		{`my "best" pic.png`, `my "best" pic.png`, "UTF-8''my%20%22best%22%20pic.png"},
		{`back\slash.png`, `back\slash.png`, "UTF-8''back%5Cslash.png"},
		{"my pic; x=1.png", "my pic; x=1.png", "UTF-8''my%20pic%3B%20x%3D1.png"},
		{"../../etc/passwd", "../../etc/passwd", "UTF-8''..%2F..%2Fetc%2Fpasswd"},
		{"  spaces  .jpg", "  spaces  .jpg", "UTF-8''%20%20spaces%20%20.jpg"},
		{"café ☕.png", "caf_ _.png", "UTF-8''caf%C3%A9%20%E2%98%95.png"},
		{"日本.jpg", "__.jpg", "UTF-8''%E6%97%A5%E6%9C%AC.jpg"},
		{"tab\there.png", "tab_here.png", "UTF-8''tab%09here.png"},
		{"new\r\nline.png", "new__line.png", "UTF-8''new%0D%0Aline.png"},
		{"nul\x00del\x7f.png", "nul_del_.png", "UTF-8''nul%00del%7F.png"},
		{"c1\u0085.png", "c1_.png", "UTF-8''c1%C2%85.png"},
		{`'quote'%25=.png`, `'quote'%25=.png`, "UTF-8''%27quote%27%2525%3D.png"},
		{"!#$&+-.^_`|~", "!#$&+-.^_`|~", "UTF-8''!#$&+-.^_`|~"},
		{`"`, `"`, "UTF-8''%22"},
		{`\`, `\`, "UTF-8''%5C"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := contentDisposition(tt.name)

			if !strings.HasPrefix(h, "attachment;") {
				t.Errorf("header %q: got prefix %q, want %q", h, h[:min(len(h), 11)], "attachment;")
			}
			for i := 0; i < len(h); i++ {
				if c := h[i]; c < 0x20 || c >= 0x7f {
					t.Errorf("header %q: byte %d is %#x, want printable ASCII only", h, i, c)
				}
			}

			// The whole header: Go's mime package decodes filename* into
			// params["filename"], in preference to the plain filename.
			disp, params, err := mime.ParseMediaType(h)
			if err != nil {
				t.Fatalf("mime.ParseMediaType(%q): %v", h, err)
			}
			if got, want := disp, "attachment"; got != want {
				t.Errorf("disposition: got %q, want %q", got, want)
			}
			if got, want := params["filename"], tt.name; got != want {
				t.Errorf("decoded filename (from filename*): got %q, want %q", got, want)
			}
			if _, ok := params["filename*"]; ok {
				t.Errorf("params has a raw filename* entry %q: want it decoded into filename", params["filename*"])
			}
			if got, want := len(params), 1; got != want {
				t.Errorf("params %q: got %d parameters, want %d (an injected parameter?)", params, got, want)
			}

			head, ext := splitDisposition(t, h)
			if got, want := ext, tt.wantExt; got != want {
				t.Errorf("filename* value: got %q, want %q", got, want)
			}

			// The ASCII fallback alone, as a client ignoring filename* sees it.
			disp, params, err = mime.ParseMediaType(head)
			if err != nil {
				t.Fatalf("mime.ParseMediaType(%q) (fallback only): %v", head, err)
			}
			if got, want := disp, "attachment"; got != want {
				t.Errorf("fallback disposition: got %q, want %q", got, want)
			}
			fallback := params["filename"]
			if got, want := fallback, tt.wantFallback; got != want {
				t.Errorf("fallback filename: got %q, want %q", got, want)
			}
			for _, r := range fallback {
				if r < 0x20 || r >= 0x7f {
					t.Errorf("fallback filename %q holds %U, want printable ASCII only", fallback, r)
				}
			}
			if got, want := len(params), 1; got != want {
				t.Errorf("fallback params %q: got %d parameters, want %d", params, got, want)
			}
			if !strings.HasPrefix(head, `attachment; filename="`) || !strings.HasSuffix(head, `"`) {
				t.Errorf("fallback %q: want a quoted filename parameter", head)
			}
		})
	}
}

// TestContentDispositionInvalidUTF8 checks a name that is not valid UTF-8
// (names are cleaned before they are stored, but the header must stay
// well-formed whatever it is given): each bad byte is one '_' in the
// fallback, and filename* carries the exact bytes.
func TestContentDispositionInvalidUTF8(t *testing.T) {
	name := "bad\xff\xfe.png"
	h := contentDisposition(name)
	for i := 0; i < len(h); i++ {
		if c := h[i]; c < 0x20 || c >= 0x7f {
			t.Fatalf("header %q: byte %d is %#x, want printable ASCII only", h, i, c)
		}
	}
	head, ext := splitDisposition(t, h)
	if got, want := ext, "UTF-8''bad%FF%FE.png"; got != want {
		t.Errorf("filename* value: got %q, want %q", got, want)
	}
	_, params, err := mime.ParseMediaType(head)
	if err != nil {
		t.Fatalf("mime.ParseMediaType(%q): %v", head, err)
	}
	if got, want := params["filename"], "bad__.png"; got != want {
		t.Errorf("fallback filename: got %q, want %q", got, want)
	}
}

func TestTameRange(t *testing.T) {
	const size = 1000
	for _, tt := range []struct{ in, want string }{
		{"", ""},
		{"bytes=0-9", "bytes=0-9"},
		{"bytes=0-9,20-29,-5", "bytes=0-9,20-29,-5"},
		{"bytes=20-29,0-9", "bytes=20-29"}, // behind: first range only
		{"bytes=0-50,40-60", "bytes=0-50"}, // overlapping
		{"bytes=-0", "bytes=1000-"},        // empty suffix: 416
		{"bytes=0-0,-0", "bytes=0-0"},
		{"items=0-1", ""}, // unknown unit: ignored
		{"bytes=" + strings.Repeat("1-1,", 20) + "2-2", "bytes=1-1"},
	} {
		r := httptest.NewRequest("GET", "/", nil)
		if tt.in != "" {
			r.Header.Set("Range", tt.in)
		}
		tameRange(r, size)
		if got := r.Header.Get("Range"); got != tt.want {
			t.Errorf("tameRange(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	// Many ascending ranges are cut to the first too.
	var many []string
	for i := range 20 {
		many = append(many, strconv.Itoa(i*10)+"-"+strconv.Itoa(i*10+1))
	}
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Set("Range", "bytes="+strings.Join(many, ","))
	tameRange(r, size)
	if got := r.Header.Get("Range"); got != "bytes=0-1" {
		t.Errorf("20 ranges: %q", got)
	}
}
