package domain_test

import (
	"regexp"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/imagestore/imagestore/domain"
)

// cleanedBase is what a raw file name cleans to before any shortening: the
// part after the last slash or backslash, valid UTF-8, control characters
// replaced, surrounding spaces removed.
func cleanedBase(raw string) string {
	if i := strings.LastIndexAny(raw, `/\`); i >= 0 {
		raw = raw[i+1:]
	}
	var b strings.Builder
	for _, r := range strings.ToValidUTF8(raw, "\uFFFD") {
		if unicode.IsControl(r) {
			r = '_'
		}
		b.WriteRune(r)
	}
	return strings.TrimSpace(b.String())
}

// FuzzCleanName: whatever a client sends as a file name, the stored name is
// valid UTF-8, at most MaxNameLen bytes, holds no slash, backslash or
// control character, has no surrounding spaces, and is its own clean form;
// a name is refused only if nothing usable is left of it.
func FuzzCleanName(f *testing.F) {
	for _, s := range []string{
		"", ".", "..", "...", " .. ", "/", `\`, "a/", "a/..", `a\.`, "cat.png", "../../../../etc/passwd.png", `..\..\boot.ini.png`,
		"C:\\Users\\x\\cat.png", " spaced name.png ", "\t\n", "\x00", "tab\tname.png", "\x7f\u0085\u009f", "\xff\xfe.png", "caf\xc3",
		"café ☕ 日本.png", "\u00a0nbsp\u00a0", "\u2028\u3000", "\u202egnp.exe", strings.Repeat("x", 300) + ".png",
		strings.Repeat("é", 200) + ".jpeg", strings.Repeat("☕", 100) + "." + strings.Repeat("e", 40), strings.Repeat("a", 254) + " .png",
		strings.Repeat("a", 250) + strings.Repeat(" ", 10) + ".png", strings.Repeat(" ", 260) + "x", "x" + strings.Repeat("\u3000", 100) + ".png",
		strings.Repeat("ab", 130), strings.Repeat("\xff", 300), "." + strings.Repeat("x", 300), strings.Repeat("x", 250) + ". \u00a0.png",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		name, ok := domain.CleanName(raw)
		base := cleanedBase(raw)
		if !ok {
			if name != "" {
				t.Fatalf("CleanName(%q) = %q, false: want an empty name when refused", raw, name)
			}
			if base != "" && base != "." && base != ".." {
				t.Fatalf("CleanName(%q) refused a name that cleans to %q", raw, base)
			}
			return
		}
		if base == "" || base == "." || base == ".." {
			t.Fatalf("CleanName(%q) = %q, true: the name cleans to %q", raw, name, base)
		}
		switch {
		case !utf8.ValidString(name):
			t.Fatalf("CleanName(%q) = %q: invalid UTF-8", raw, name)
		case len(name) > domain.MaxNameLen:
			t.Fatalf("CleanName(%q) = %q: %d bytes, the limit is %d", raw, name, len(name), domain.MaxNameLen)
		case strings.ContainsAny(name, `/\`):
			t.Fatalf("CleanName(%q) = %q: holds a slash or backslash", raw, name)
		case strings.IndexFunc(name, unicode.IsControl) >= 0:
			t.Fatalf("CleanName(%q) = %q: holds a control character", raw, name)
		case strings.TrimSpace(name) != name:
			t.Fatalf("CleanName(%q) = %q: surrounding spaces", raw, name)
		case name == "." || name == "..":
			t.Fatalf("CleanName(%q) = %q", raw, name)
		}
		if again, ok := domain.CleanName(name); !ok || again != name {
			t.Fatalf("CleanName(%q) = %q, but CleanName(%q) = %q, %v", raw, name, name, again, ok)
		}
		// A name that needs no shortening is kept whole.
		if len(base) <= domain.MaxNameLen && name != base {
			t.Fatalf("CleanName(%q) = %q, want %q", raw, name, base)
		}
	})
}

var (
	tokenRe    = regexp.MustCompile(`^[A-Za-z0-9_-]{10}$`)
	idRe       = regexp.MustCompile(`^[A-Za-z0-9_-]{4}$`)
	usernameRe = regexp.MustCompile(`^[A-Za-z0-9_]{1,150}$`)
)

// FuzzValidators: the validators of tokens, ids and usernames never panic
// and agree with the patterns the README gives.
func FuzzValidators(f *testing.F) {
	for _, s := range []string{
		"", "a", "abcd", "ab-_", "ab.d", "abcde", "AbCdEfGhIj", "AbCdEfGhI-", "AbCdEfGhI", "AbCdEfGhIjK", "AbCdEfGh\x00j", "AbCdEfGhI\n",
		"alice", "alice_2", "al-ice", "alice\n", "ümlaut", "\xff\xfe", strings.Repeat("u", 150), strings.Repeat("u", 151), "a b",
		domain.NewToken(), domain.NewID(), "ab\u00e9", "ǅǅǅǅ", "１２３４",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := domain.ValidToken(s), tokenRe.MatchString(s); got != want {
			t.Errorf("ValidToken(%q) = %v, the pattern says %v", s, got, want)
		}
		if got, want := domain.ValidID(s), idRe.MatchString(s); got != want {
			t.Errorf("ValidID(%q) = %v, the pattern says %v", s, got, want)
		}
		if got, want := domain.ValidUsername(s), usernameRe.MatchString(s); got != want {
			t.Errorf("ValidUsername(%q) = %v, the pattern says %v", s, got, want)
		}
	})
}
