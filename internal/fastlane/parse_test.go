package fastlane

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
)

// parseCase is a head given to parse, and what parse must make of it.
type parseCase struct {
	name string
	in   string
	ok   bool
	// For an accepted head: its length (0 means all of in), and the
	// request parse reads from it.
	n      int
	method string
	target string
	fields [][2]string
}

// manyFields returns n header lines, the first of them Host.
func manyFields(n int) string {
	var b strings.Builder
	b.WriteString("Host: example.com\r\n")
	for i := 1; i < n; i++ {
		fmt.Fprintf(&b, "X-F%d: %d\r\n", i, i)
	}
	return b.String()
}

// manyFieldsWant returns the fields manyFields(n) holds.
func manyFieldsWant(n int) [][2]string {
	f := [][2]string{{"Host", "example.com"}}
	for i := 1; i < n; i++ {
		f = append(f, [2]string{fmt.Sprintf("X-F%d", i), fmt.Sprint(i)})
	}
	return f
}

const simple = "GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"

var parseCases = []parseCase{
	// Accepted.
	{name: "get", in: simple, ok: true, method: "GET", target: "/",
		fields: [][2]string{{"Host", "example.com"}}},
	{name: "head", in: "HEAD /img/1 HTTP/1.1\r\nHost: example.com\r\n\r\n", ok: true,
		method: "HEAD", target: "/img/1", fields: [][2]string{{"Host", "example.com"}}},
	{name: "query", in: "GET /a/b?c=d&e=%2F HTTP/1.1\r\nHost: x\r\n\r\n", ok: true,
		method: "GET", target: "/a/b?c=d&e=%2F", fields: [][2]string{{"Host", "x"}}},
	{name: "escaped path", in: "GET /a%20b/%C3%A9 HTTP/1.1\r\nHost: x\r\n\r\n", ok: true,
		method: "GET", target: "/a%20b/%C3%A9", fields: [][2]string{{"Host", "x"}}},
	{name: "keep-alive", in: "GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n", ok: true,
		method: "GET", target: "/", fields: [][2]string{{"Host", "x"}, {"Connection", "keep-alive"}}},
	{name: "keep-alive any case", in: "GET / HTTP/1.1\r\nCONNECTION: Keep-Alive\r\nHost: x\r\n\r\n", ok: true,
		method: "GET", target: "/", fields: [][2]string{{"CONNECTION", "Keep-Alive"}, {"Host", "x"}}},
	{name: "several fields",
		in: "GET /x HTTP/1.1\r\nHost: img.example:8080\r\nUser-Agent: curl/8.5\r\nAccept: */*\r\n" +
			"Accept-Encoding: gzip, deflate\r\nX-Empty:\r\n\r\n",
		ok: true, method: "GET", target: "/x",
		fields: [][2]string{{"Host", "img.example:8080"}, {"User-Agent", "curl/8.5"}, {"Accept", "*/*"},
			{"Accept-Encoding", "gzip, deflate"}, {"X-Empty", ""}}},
	{name: "lower and upper case names", in: "GET / HTTP/1.1\r\nhost: x\r\nUSER-AGENT: u\r\naCcEpT: a\r\n\r\n", ok: true,
		method: "GET", target: "/", fields: [][2]string{{"host", "x"}, {"USER-AGENT", "u"}, {"aCcEpT", "a"}}},
	{name: "OWS trimmed", in: "GET / HTTP/1.1\r\nHost: \t x \t\r\nAccept:a b\r\nX-A:\t  \t\r\nX-B:  c\td  \r\n\r\n", ok: true,
		method: "GET", target: "/", fields: [][2]string{{"Host", "x"}, {"Accept", "a b"}, {"X-A", ""}, {"X-B", "c\td"}}},
	{name: "token characters in a name", in: "GET / HTTP/1.1\r\nHost: x\r\nX-!#$%&'*+-.^_`|~9: v\r\n\r\n", ok: true,
		method: "GET", target: "/", fields: [][2]string{{"Host", "x"}, {"X-!#$%&'*+-.^_`|~9", "v"}}},
	{name: "host forms", in: "GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n", ok: true,
		method: "GET", target: "/", fields: [][2]string{{"Host", "[::1]:8080"}}},
	{name: "value characters", in: "GET / HTTP/1.1\r\nHost: x\r\nX-V: !\"#$%&'()*+,-./09:;<=>?@AZ[\\]^_`az{|}~\r\n\r\n", ok: true,
		method: "GET", target: "/", fields: [][2]string{{"Host", "x"}, {"X-V", "!\"#$%&'()*+,-./09:;<=>?@AZ[\\]^_`az{|}~"}}},
	{name: "pipelined request", in: simple + "GET /next HTTP/1.1\r\nHost: example.com\r\n\r\n", ok: true,
		n: len(simple), method: "GET", target: "/", fields: [][2]string{{"Host", "example.com"}}},
	{name: "pipelined partial request", in: simple + "POST /up HTTP/1.1\r\nContent-Le", ok: true,
		n: len(simple), method: "GET", target: "/", fields: [][2]string{{"Host", "example.com"}}},
	{name: "pipelined body bytes", in: simple + "\r\n\r\nabc", ok: true,
		n: len(simple), method: "GET", target: "/", fields: [][2]string{{"Host", "example.com"}}},
	{name: "maxFields fields", in: "GET / HTTP/1.1\r\n" + manyFields(maxFields) + "\r\n", ok: true,
		method: "GET", target: "/", fields: manyFieldsWant(maxFields)},

	// Refused.
	{name: "empty", in: ""},
	{name: "head not ended", in: "GET / HTTP/1.1\r\nHost: x\r\n"},
	{name: "head not ended, one CRLF short", in: "GET / HTTP/1.1\r\nHost: x\r\n\r"},
	{name: "request line only", in: "GET / HTTP/1.1\r\n\r\n"},
	{name: "POST", in: "POST / HTTP/1.1\r\nHost: x\r\n\r\n"},
	{name: "PUT", in: "PUT / HTTP/1.1\r\nHost: x\r\n\r\n"},
	{name: "OPTIONS", in: "OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n"},
	{name: "lower case method", in: "get / HTTP/1.1\r\nHost: x\r\n\r\n"},
	{name: "longer method", in: "GETS / HTTP/1.1\r\nHost: x\r\n\r\n"},
	{name: "leading CRLF", in: "\r\n" + simple},
	{name: "HTTP/1.0", in: "GET / HTTP/1.0\r\nHost: x\r\n\r\n"},
	{name: "HTTP/2", in: "GET / HTTP/2\r\nHost: x\r\n\r\n"},
	{name: "HTTP/1.1 lower case", in: "GET / http/1.1\r\nHost: x\r\n\r\n"},
	{name: "no version", in: "GET /\r\nHost: x\r\n\r\n"},
	{name: "space after version", in: "GET / HTTP/1.1 \r\nHost: x\r\n\r\n"},
	{name: "two spaces before target", in: "GET  / HTTP/1.1\r\nHost: x\r\n\r\n"},
	{name: "two spaces before version", in: "GET /  HTTP/1.1\r\nHost: x\r\n\r\n"},
	{name: "absolute form", in: "GET http://x/ HTTP/1.1\r\nHost: x\r\n\r\n"},
	{name: "asterisk form", in: "HEAD * HTTP/1.1\r\nHost: x\r\n\r\n"},
	{name: "space in target", in: "GET /a b HTTP/1.1\r\nHost: x\r\n\r\n"},
	{name: "lone percent", in: "GET /% HTTP/1.1\r\nHost: x\r\n\r\n"},
	{name: "cut escape", in: "GET /a%2 HTTP/1.1\r\nHost: x\r\n\r\n"},
	{name: "escape not hex", in: "GET /a%zz HTTP/1.1\r\nHost: x\r\n\r\n"},
	{name: "tab in target", in: "GET /a\tb HTTP/1.1\r\nHost: x\r\n\r\n"},
	{name: "CTL in target", in: "GET /a\x01b HTTP/1.1\r\nHost: x\r\n\r\n"},
	{name: "DEL in target", in: "GET /a\x7fb HTTP/1.1\r\nHost: x\r\n\r\n"},
	{name: "non-ASCII target", in: "GET /caf\xc3\xa9 HTTP/1.1\r\nHost: x\r\n\r\n"},
	{name: "missing Host", in: "GET / HTTP/1.1\r\nAccept: */*\r\n\r\n"},
	{name: "two Hosts", in: "GET / HTTP/1.1\r\nHost: x\r\nHost: x\r\n\r\n"},
	{name: "two Hosts, cases differ", in: "GET / HTTP/1.1\r\nHost: x\r\nhOST: y\r\n\r\n"},
	{name: "empty Host", in: "GET / HTTP/1.1\r\nHost:\r\n\r\n"},
	{name: "Host with a space", in: "GET / HTTP/1.1\r\nHost: a b\r\n\r\n"},
	{name: "Host with a slash", in: "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n"},
	{name: "Host with userinfo", in: "GET / HTTP/1.1\r\nHost: u@a\r\n\r\n"},
	{name: "Host with a comma", in: "GET / HTTP/1.1\r\nHost: a,b\r\n\r\n"},
	{name: "Content-Length", in: "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"},
	{name: "content-length lower case", in: "GET / HTTP/1.1\r\nHost: x\r\ncontent-length: 5\r\n\r\nhello"},
	{name: "Transfer-Encoding", in: "GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
	{name: "Expect", in: "GET / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\r\n"},
	{name: "Upgrade", in: "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n"},
	{name: "TE", in: "GET / HTTP/1.1\r\nHost: x\r\nTE: trailers\r\n\r\n"},
	{name: "Trailer", in: "GET / HTTP/1.1\r\nHost: x\r\nTrailer: X-Sum\r\n\r\n"},
	{name: "Connection: close", in: "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"},
	{name: "Connection: Close", in: "GET / HTTP/1.1\r\nHost: x\r\nConnection: Close\r\n\r\n"},
	{name: "Connection: Upgrade", in: "GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n\r\n"},
	{name: "Connection list", in: "GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, Upgrade\r\n\r\n"},
	{name: "Connection empty", in: "GET / HTTP/1.1\r\nHost: x\r\nConnection:\r\n\r\n"},
	{name: "obs-fold", in: "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n"},
	{name: "obs-fold with a tab", in: "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n\tb\r\n\r\n"},
	{name: "folded first line", in: "GET / HTTP/1.1\r\n Host: x\r\n\r\n"},
	{name: "space before colon", in: "GET / HTTP/1.1\r\nHost : x\r\n\r\n"},
	{name: "tab before colon", in: "GET / HTTP/1.1\r\nHost\t: x\r\n\r\n"},
	{name: "empty name", in: "GET / HTTP/1.1\r\nHost: x\r\n: v\r\n\r\n"},
	{name: "no colon", in: "GET / HTTP/1.1\r\nHost: x\r\nX-A\r\n\r\n"},
	{name: "separator in name", in: "GET / HTTP/1.1\r\nHost: x\r\nX(A): v\r\n\r\n"},
	{name: "non-ASCII name", in: "GET / HTTP/1.1\r\nHost: x\r\nX-\xc3\xa9: v\r\n\r\n"},
	{name: "CTL in value", in: "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x01b\r\n\r\n"},
	{name: "NUL in value", in: "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n"},
	{name: "CR in value", in: "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n"},
	{name: "DEL in value", in: "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x7fb\r\n\r\n"},
	{name: "obs-text in value", in: "GET / HTTP/1.1\r\nHost: x\r\nX-A: caf\xc3\xa9\r\n\r\n"},
	{name: "bare LF", in: "GET / HTTP/1.1\nHost: x\n\n"},
	{name: "bare LF after request line", in: "GET / HTTP/1.1\nHost: x\r\n\r\n"},
	{name: "bare LF between fields", in: "GET / HTTP/1.1\r\nHost: x\nX-A: b\r\n\r\n"},
	{name: "bare LF ending the head", in: "GET / HTTP/1.1\r\nHost: x\r\n\n\r\n\r\n"},
	{name: "more than maxFields fields", in: "GET / HTTP/1.1\r\n" + manyFields(maxFields+1) + "\r\n"},
}

func TestParse(t *testing.T) {
	// One Request for every case, as a lane's connection has: what a
	// case reads must not depend on what the one before left in it.
	var req Request
	for _, tc := range parseCases {
		t.Run(tc.name, func(t *testing.T) {
			n, ok := parse([]byte(tc.in), &req)
			if ok != tc.ok {
				t.Fatalf("parse(%q) ok = %v, want %v", tc.in, ok, tc.ok)
			}
			if !ok {
				if n != 0 {
					t.Errorf("parse(%q) refused with length %d, want 0", tc.in, n)
				}
				return
			}
			wantN := tc.n
			if wantN == 0 {
				wantN = len(tc.in)
			}
			if n != wantN {
				t.Errorf("length = %d, want %d", n, wantN)
			}
			if req.Method != tc.method {
				t.Errorf("Method = %q, want %q", req.Method, tc.method)
			}
			if string(req.Target) != tc.target {
				t.Errorf("Target = %q, want %q", req.Target, tc.target)
			}
			var got [][2]string
			for _, f := range req.Fields {
				got = append(got, [2]string{string(f.Name), string(f.Value)})
			}
			if !slices.Equal(got, tc.fields) {
				t.Errorf("Fields = %q, want %q", got, tc.fields)
			}
		})
	}
}

func TestEqualFold(t *testing.T) {
	for _, tc := range []struct {
		b, s string
		want bool
	}{
		{"host", "host", true},
		{"HOST", "host", true},
		{"HoSt", "host", true},
		{"hos", "host", false},
		{"hosts", "host", false},
		{"", "", true},
		{"Content-Length", "content-length", true},
		{"Content_Length", "content-length", false},
		{"[", "{", false}, // '[' and '{' differ by 'a'-'A' but are not letters
		{"\xc8", "\xe8", false},
	} {
		if got := EqualFold([]byte(tc.b), tc.s); got != tc.want {
			t.Errorf("EqualFold(%q, %q) = %v, want %v", tc.b, tc.s, got, tc.want)
		}
	}
}

// FuzzParse checks parse against net/http: whatever head parse accepts,
// http.ReadRequest must read as the same request, taking exactly the bytes
// parse took, with no body and the connection kept open.
func FuzzParse(f *testing.F) {
	for _, tc := range parseCases {
		f.Add([]byte(tc.in))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		var req Request
		n, ok := parse(in, &req)
		if !ok {
			return
		}
		if n <= 0 || n > len(in) || !bytes.HasSuffix(in[:n], []byte("\r\n\r\n")) {
			t.Fatalf("parse(%q) accepted with length %d", in, n)
		}
		br := bufio.NewReader(bytes.NewReader(in[:n]))
		hr, err := http.ReadRequest(br)
		if err != nil {
			t.Fatalf("parse accepted %q, http.ReadRequest refused it: %v", in[:n], err)
		}
		if _, err := br.ReadByte(); err != io.EOF {
			t.Errorf("http.ReadRequest left bytes of %q unread", in[:n])
		}
		if hr.Method != req.Method {
			t.Errorf("Method: lane %q, net/http %q", req.Method, hr.Method)
		}
		if hr.RequestURI != string(req.Target) {
			t.Errorf("target: lane %q, net/http %q", req.Target, hr.RequestURI)
		}
		for _, f := range req.Fields {
			if EqualFold(f.Name, "host") {
				// ReadRequest moves Host from Header to Request.Host.
				if hr.Host != string(f.Value) {
					t.Errorf("Host: lane %q, net/http %q", f.Value, hr.Host)
				}
				continue
			}
			if vs := hr.Header.Values(string(f.Name)); !slices.Contains(vs, string(f.Value)) {
				t.Errorf("field %q: lane %q, net/http %q", f.Name, f.Value, vs)
			}
		}
		if hr.ContentLength != 0 || len(hr.TransferEncoding) > 0 || hr.Body != http.NoBody {
			t.Errorf("net/http reads a body: ContentLength %d, TransferEncoding %q",
				hr.ContentLength, hr.TransferEncoding)
		}
		if hr.Close {
			t.Errorf("net/http would close the connection after %q", in[:n])
		}
		if hr.ProtoMajor != 1 || hr.ProtoMinor != 1 {
			t.Errorf("net/http reads version %s", hr.Proto)
		}
	})
}
