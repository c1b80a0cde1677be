package domain_test

import (
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/imagestore/imagestore/domain"
)

func TestCleanName(t *testing.T) {
	tests := []struct {
		raw    string
		want   string
		wantOK bool
	}{
		{"plain.png", "plain.png", true},
		{"a/b/c.png", "c.png", true},
		{"/abs/path/d.jpg", "d.jpg", true},
		{`C:\x\y.png`, "y.png", true},
		{`mixed/dirs\and/z.gif`, "z.gif", true},
		{`a\b/c\d.png`, "d.png", true},
		{"  spaced.png ", "spaced.png", true},
		{"dir/  spaced.png\u00a0", "spaced.png", true},
		{"inner space.png", "inner space.png", true},
		{"ünïcødé-画像.png", "ünïcødé-画像.png", true},
		{".hidden", ".hidden", true},
		{"...", "...", true},
		{"..png", "..png", true},

		// Nothing usable.
		{"", "", false},
		{".", "", false},
		{"..", "", false},
		{"dir/", "", false},
		{`dir\`, "", false},
		{"a/..", "", false},
		{`a\.`, "", false},
		{"   ", "", false},
		{" . ", "", false},
		{"x/ .. ", "", false},

		// Control characters become '_'.
		{"a\x00b.png", "a_b.png", true},
		{"a\nb.png", "a_b.png", true},
		{"a\r\nb.png", "a__b.png", true},
		{"\x1b[31mred.png", "_[31mred.png", true},
		{"del\x7f.png", "del_.png", true},
		{"c1\u0085\u009f.png", "c1__.png", true},
		{"x.png\x00", "x.png_", true},
		{"dir/\x00", "_", true},

		// Invalid UTF-8 becomes U+FFFD.
		{"a\xffb.png", "a\uFFFDb.png", true},
		{"\xc3.png", "\uFFFD.png", true},
		{"\xed\xa0\x80.png", "\uFFFD.png", true}, // a UTF-16 surrogate
		{"caf\xe9.png", "caf\uFFFD.png", true},   // Latin-1
	}
	for _, tc := range tests {
		got, ok := domain.CleanName(tc.raw)
		if got != tc.want || ok != tc.wantOK {
			t.Errorf("CleanName(%q): got (%q, %v), want (%q, %v)", tc.raw, got, ok, tc.want, tc.wantOK)
		}
		if ok {
			checkCleanNameForm(t, tc.raw, got)
		}
	}
}

// checkCleanNameForm checks what every cleaned name must be.
func checkCleanNameForm(t *testing.T, raw, name string) {
	t.Helper()
	if !utf8.ValidString(name) {
		t.Errorf("CleanName(%q) = %q: not valid UTF-8", raw, name)
	}
	if len(name) > domain.MaxNameLen {
		t.Errorf("CleanName(%q): got %d bytes, want at most %d", raw, len(name), domain.MaxNameLen)
	}
	if strings.ContainsAny(name, `/\`) {
		t.Errorf("CleanName(%q) = %q: contains a path separator", raw, name)
	}
	for _, r := range name {
		if unicode.IsControl(r) {
			t.Errorf("CleanName(%q) = %q: contains the control character %U", raw, name, r)
		}
	}
	if name == "" || name == "." || name == ".." {
		t.Errorf("CleanName(%q) = %q: not a usable name", raw, name)
	}
}

func TestCleanNameTruncates(t *testing.T) {
	x := func(n int) string { return strings.Repeat("x", n) }
	tests := []struct {
		name string
		raw  string
		want string
	}{
		{"exactly the limit", x(251) + ".png", x(251) + ".png"},
		{"one byte over", x(252) + ".png", x(251) + ".png"},
		{"300 bytes", x(296) + ".png", x(251) + ".png"},
		{"300 bytes after a path", "some/dir/" + x(296) + ".png", x(251) + ".png"},
		{"long extension kept", x(300) + ".jpeg", x(250) + ".jpeg"},
		{"multibyte extension kept", x(300) + ".pñg", x(250) + ".pñg"},
		{"extension too long to keep", x(100) + "." + strings.Repeat("y", 200), (x(100) + "." + strings.Repeat("y", 200))[:255]},
		{"no extension", x(400), x(255)},
		{"2-byte characters, cut inside one", strings.Repeat("é", 200) + ".png", strings.Repeat("é", 125) + ".png"},
		{"3-byte characters, cut inside one", strings.Repeat("€", 100) + ".png", strings.Repeat("€", 83) + ".png"},
		{"4-byte characters, cut inside one", strings.Repeat("😀", 100) + ".png", strings.Repeat("😀", 62) + ".png"},
		{"4-byte characters, no extension", strings.Repeat("😀", 100), strings.Repeat("😀", 63)},
		{"control characters counted after replacement", strings.Repeat("\x00", 300) + ".png", strings.Repeat("_", 251) + ".png"},
		// Each invalid byte becomes U+FFFD (3 bytes), so the name grows
		// before it is cut.
		{"invalid UTF-8 grows, then is cut", strings.Repeat("a\xff", 100) + ".png", strings.Repeat("a\uFFFD", 62) + "a.png"},
	}
	for _, tc := range tests {
		got, ok := domain.CleanName(tc.raw)
		if !ok || got != tc.want {
			t.Errorf("%s: CleanName(%d bytes): got (%d bytes %q, %v), want (%d bytes %q, true)",
				tc.name, len(tc.raw), len(got), got, ok, len(tc.want), tc.want)
		}
		checkCleanNameForm(t, tc.raw, got)
	}
}

// TestCleanNameIdempotent checks that a cleaned name is already clean: a
// client that sends back the name it was given gets the same name.
func TestCleanNameIdempotent(t *testing.T) {
	inputs := []string{
		"a/b/c.png", "  spaced.png ", "a\x00b", "a\xffb.png",
		strings.Repeat("é", 200) + ".png", strings.Repeat("x", 296) + ".png",
		strings.Repeat("😀", 100), strings.Repeat("x", 100) + "." + strings.Repeat("y", 200),
	}
	for _, raw := range inputs {
		once, ok := domain.CleanName(raw)
		if !ok {
			t.Errorf("CleanName(%q): got not ok, want ok", raw)
			continue
		}
		twice, ok := domain.CleanName(once)
		if !ok || twice != once {
			t.Errorf("CleanName(CleanName(%q)): got (%q, %v), want (%q, true)", raw, twice, ok, once)
		}
	}
}

// TestCleanNameTruncationLeavesNoSurroundingSpace: a cut that ends on a
// space must not leave it at the end of the stored name, and the result
// must be stable under CleanName.
func TestCleanNameTruncationLeavesNoSurroundingSpace(t *testing.T) {
	for _, raw := range []string{
		strings.Repeat("x", 254) + " tail-without-extension-that-is-cut-off",
		strings.Repeat("x", 253) + "\u00a0" + strings.Repeat("y", 40),                            // a no-break space
		strings.Repeat("x", 254) + " " + strings.Repeat("y", 40) + "." + strings.Repeat("z", 40), // an extension too long to keep
	} {
		got, ok := domain.CleanName(raw)
		if !ok {
			t.Errorf("CleanName(%d bytes): got not ok, want ok", len(raw))
			continue
		}
		tail := func(s string) string { return "..." + s[max(0, len(s)-8):] }
		if trimmed := strings.TrimSpace(got); got != trimmed {
			t.Errorf("CleanName(%d bytes): got %d bytes %q (ends in %q), want no surrounding space (%d bytes %q)",
				len(raw), len(got), tail(got), got[len(trimmed):], len(trimmed), tail(trimmed))
		}
		if again, _ := domain.CleanName(got); again != got {
			t.Errorf("CleanName(CleanName(%d bytes)): got %d bytes %q, want %d bytes %q (unchanged)", len(raw), len(again), tail(again), len(got), tail(got))
		}
	}
}

func TestValidUsername(t *testing.T) {
	for _, s := range []string{"a", "Z", "0", "_", "alice_1", "ALICE", strings.Repeat("a", domain.MaxUsernameLen)} {
		if !domain.ValidUsername(s) {
			t.Errorf("ValidUsername(%q): got false, want true", s)
		}
	}
	for _, s := range []string{"", "a-b", "../x", "a/b", "a b", "a.b", "é", "a\x00", strings.Repeat("a", domain.MaxUsernameLen+1)} {
		if domain.ValidUsername(s) {
			t.Errorf("ValidUsername(%q): got true, want false", s)
		}
	}
}

func TestValidTokenAndID(t *testing.T) {
	for _, tc := range []struct {
		s         string
		token, id bool
	}{
		{"AbCd-_0123", true, false},
		{"Ab-_", false, true},
		{"", false, false},
		{"AbCd-_012", false, false},
		{"AbCd-_01234", false, false},
		{"AbCd+_0123", false, false},
		{"Ab/_", false, false},
		{"Ab._", false, false},
		{"Abé", false, false}, // 4 bytes, not 4 symbols of the alphabet
	} {
		if got := domain.ValidToken(tc.s); got != tc.token {
			t.Errorf("ValidToken(%q): got %v, want %v", tc.s, got, tc.token)
		}
		if got := domain.ValidID(tc.s); got != tc.id {
			t.Errorf("ValidID(%q): got %v, want %v", tc.s, got, tc.id)
		}
	}
}

// TestNewTokenAndID checks the form of new tokens and ids, and that their
// symbols cover the whole alphabet (a bias, or a narrower alphabet, would
// leave some out).
func TestNewTokenAndID(t *testing.T) {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	counts := map[rune]int{}
	tokens := map[string]bool{}
	const n = 3000
	for range n {
		tok := domain.NewToken()
		if !tokenRE.MatchString(tok) || !domain.ValidToken(tok) {
			t.Fatalf("NewToken(): got %q, want %d symbols of [A-Za-z0-9_-]", tok, domain.TokenLen)
		}
		if tokens[tok] {
			t.Errorf("NewToken(): got %q twice", tok)
		}
		tokens[tok] = true
		for _, r := range tok {
			counts[r]++
		}
		id := domain.NewID()
		if !idRE.MatchString(id) || !domain.ValidID(id) {
			t.Fatalf("NewID(): got %q, want %d symbols of [A-Za-z0-9_-]", id, domain.IDLen)
		}
		for _, r := range id {
			counts[r]++
		}
	}
	total := n * (domain.TokenLen + domain.IDLen)
	for _, r := range alphabet {
		// Each symbol is expected total/64 = 656 times; a fair draw falls
		// below half that with negligible probability.
		if got, min := counts[r], total/64/2; got < min {
			t.Errorf("symbol %q drawn %d times in %d: got fewer than %d, want about %d", r, got, total, min, total/64)
		}
	}
	if got, want := len(counts), len(alphabet); got != want {
		t.Errorf("distinct symbols drawn: got %d, want %d", got, want)
	}
}
