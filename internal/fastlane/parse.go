package fastlane

import "bytes"

// parse reads the head of one request from the start of b into req and
// returns its length. It returns false for anything but a whole head of a
// GET or HEAD of HTTP/1.1 with no body, in strict syntax (RFC 9112): a
// request the lane must leave to net/http. Only what frames the request is
// judged here (the body, the connection, Host); the Answerer judges the
// rest.
func parse(b []byte, req *Request) (int, bool) {
	end := bytes.Index(b, []byte("\r\n\r\n"))
	if end < 0 {
		return 0, false
	}
	head := b[:end+2] // each line with its CRLF
	line, rest, _ := bytes.Cut(head, []byte("\r\n"))
	switch {
	case bytes.HasPrefix(line, []byte("GET ")):
		req.Method, line = "GET", line[4:]
	case bytes.HasPrefix(line, []byte("HEAD ")):
		req.Method, line = "HEAD", line[5:]
	default:
		return 0, false
	}
	target, version, ok := bytes.Cut(line, []byte(" "))
	if !ok || len(target) == 0 || target[0] != '/' || string(version) != "HTTP/1.1" {
		return 0, false
	}
	for i, c := range target {
		if c <= ' ' || c >= 0x7f {
			return 0, false
		}
		// An escape must be whole, as net/url requires.
		if c == '%' && (i+2 >= len(target) || !isHex(target[i+1]) || !isHex(target[i+2])) {
			return 0, false
		}
	}
	req.Target = target
	req.Fields = req.Fields[:0]
	hosts := 0
	for len(rest) > 0 {
		line, rest, _ = bytes.Cut(rest, []byte("\r\n"))
		if len(req.Fields) == maxFields {
			return 0, false
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			return 0, false // no name, or a folded line
		}
		name := line[:colon]
		for _, c := range name {
			if !isTokenChar(c) {
				return 0, false
			}
		}
		value := bytes.Trim(line[colon+1:], " \t")
		for _, c := range value {
			if c < ' ' && c != '\t' || c >= 0x7f {
				return 0, false
			}
		}
		switch {
		case EqualFold(name, "host"):
			hosts++
			if hosts > 1 || !validHost(value) {
				return 0, false
			}
		case EqualFold(name, "connection"):
			if !EqualFold(value, "keep-alive") {
				return 0, false // close, upgrade or a list: net/http's
			}
		case EqualFold(name, "content-length"), EqualFold(name, "transfer-encoding"),
			EqualFold(name, "expect"), EqualFold(name, "upgrade"), EqualFold(name, "te"),
			EqualFold(name, "trailer"):
			return 0, false
		}
		req.Fields = append(req.Fields, Field{Name: name, Value: value})
	}
	if hosts != 1 {
		return 0, false
	}
	return end + 4, true
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// isTokenChar reports whether c may be in a token (RFC 9110 5.6.2).
func isTokenChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return bytes.IndexByte([]byte("!#$%&'*+-.^_`|~"), c) >= 0
}

// validHost accepts the host names and addresses a Host header holds,
// with a port: letters, digits, ".-_:[]".
func validHost(v []byte) bool {
	if len(v) == 0 {
		return false
	}
	for _, c := range v {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '.' || c == '-' || c == '_' || c == ':' || c == '[' || c == ']':
		default:
			return false
		}
	}
	return true
}

// EqualFold reports whether b is s in ASCII, ignoring case; s is lower
// case (a header name, a token).
func EqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}
