package domain

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"path"
	"strings"
	"unicode"
	"unicode/utf8"
)

const (
	// TokenLen and IDLen are the lengths of tokens and image ids.
	TokenLen = 10
	IDLen    = 4
	// MaxUsernameLen bounds usernames, as Django bounded them.
	MaxUsernameLen = 150
	// MaxNameLen bounds stored file names, in bytes.
	MaxNameLen = 255
)

// alphabet has 64 symbols, so a random byte's low six bits pick one without
// bias.
const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

func randomString(n int) string {
	b := make([]byte, n)
	rand.Read(b) // never fails: see crypto/rand
	for i := range b {
		b[i] = alphabet[b[i]&63]
	}
	return string(b)
}

// NewToken returns a random token of TokenLen symbols of [A-Za-z0-9_-].
func NewToken() string { return randomString(TokenLen) }

// NewID returns a random image id of IDLen symbols of [A-Za-z0-9_-].
func NewID() string { return randomString(IDLen) }

func inAlphabet(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		if strings.IndexByte(alphabet, s[i]) < 0 {
			return false
		}
	}
	return true
}

// ValidToken reports whether s has the form of a token.
func ValidToken(s string) bool { return inAlphabet(s, TokenLen) }

// ValidID reports whether s has the form of an image id.
func ValidID(s string) bool { return inAlphabet(s, IDLen) }

// ValidUsername reports whether s is a username: 1 to MaxUsernameLen
// characters of [A-Za-z0-9_], the original's URL pattern.
func ValidUsername(s string) bool {
	if s == "" || len(s) > MaxUsernameLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// CleanName turns a client's file name into the name an image is stored
// under, as the original did: the part after the last slash or backslash,
// without surrounding spaces, at most MaxNameLen bytes (the extension kept).
// Invalid UTF-8 and control characters are replaced. It returns false if
// nothing usable is left ("", "." or "..").
func CleanName(raw string) (string, bool) {
	if i := strings.LastIndexAny(raw, `/\`); i >= 0 {
		raw = raw[i+1:]
	}
	name := strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return '_'
		}
		return r
	}, strings.ToValidUTF8(raw, "\uFFFD"))
	name = strings.TrimSpace(name)
	if name == "" || name == "." || name == ".." {
		return "", false
	}
	if len(name) > MaxNameLen {
		ext := path.Ext(name)
		if len(ext) > 32 {
			ext = ""
		}
		base := name[:MaxNameLen-len(ext)]
		for !utf8.ValidString(base) { // do not cut a character in two
			base = base[:len(base)-1]
		}
		name = strings.TrimSpace(base) + ext
	}
	return name, true
}

// hashKey names a store object after a hash of a user-supplied value, so
// that the value itself never becomes part of a path.
func hashKey(kind, value string) string {
	sum := sha256.Sum256([]byte(kind + "\x00" + value))
	return hex.EncodeToString(sum[:])
}

func userKey(userHash string) string    { return "users/" + userHash + ".json" }
func indexKey(userHash string) string   { return "index/" + userHash + ".json" }
func tokenKey(token string) string      { return "tokens/" + hashKey("token", token) + ".json" }
func blobKey(userHash, b string) string { return blobFolder(userHash) + b + ".gz" }
func blobFolder(userHash string) string { return "blobs/" + userHash + "/" }
func userHashOf(username string) string { return hashKey("user", username) }

// userHash is userHashOf, remembered for the users last asked for: a
// download asks for it three times (the user, the list, the blob), and
// SHA-256 was a few percent of a cached download's CPU.
func (s *Service) userHash(username string) string {
	if h, ok := s.hashes.get(username); ok {
		return h
	}
	h := userHashOf(username)
	s.hashes.put(username, h)
	return h
}

func newBlobName() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
