package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func runCheck(t *testing.T, data string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(binary, append([]string{"check", "--data", data}, args...)...)
	out, err := cmd.CombinedOutput()
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatal(err)
		}
		code = ee.ExitCode()
	}
	return string(out), code
}

// TestCheckSubcommand damages a stopped server's data folder in each way
// check looks for, and checks the report, the exit codes and the repair.
func TestCheckSubcommand(t *testing.T) {
	data := t.TempDir()
	s := start(t, data)
	tok := s.newUser("checked")
	s.uploadID(tok, "a.ppm", fixture(t, "ppm-raw.ppm"))
	s.uploadID(tok, "b.png", fixture(t, "png-rgb.png"))
	s.uploadID(tok, "c.gif", fixture(t, "gif-still.gif"))
	// While the server runs, check refuses: it would see uploads in progress
	// as orphans.
	if out, code := runCheck(t, data); code == 0 || !strings.Contains(out, "another imagestore process") {
		t.Fatalf("check beside a running server: exit %d\n%s", code, out)
	}
	s.stop()

	out, code := runCheck(t, data)
	if code != 0 || !strings.Contains(out, "checked 1 users and 3 images: 0 problems") {
		t.Fatalf("check of a sound folder: exit %d\n%s", code, out)
	}

	blobs, _ := filepath.Glob(filepath.Join(data, "objects", "blobs", "*", "*.gz"))
	if len(blobs) != 3 {
		t.Fatalf("%d blobs", len(blobs))
	}
	// Which blob is which does not matter: one damaged, one gone, plus an
	// orphan and a stale token record.
	b, _ := os.ReadFile(blobs[0])
	b[len(b)/2] ^= 0x55
	os.WriteFile(blobs[0], b, 0o600)
	os.Remove(blobs[1])
	os.WriteFile(filepath.Join(filepath.Dir(blobs[2]), "00000000000000000000000000000000.gz"), []byte("x"), 0o600)
	os.WriteFile(filepath.Join(data, "objects", "tokens", strings.Repeat("ab", 32)+".json"), []byte(`{"username":"checked"}`), 0o600)

	out, code = runCheck(t, data)
	for _, want := range []string{"damaged images (1)", "images listed without their bytes (1)", "stored bytes no image names (1)", "stale token records (1)", "4 problems, 0 repaired"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	if code != 1 {
		t.Errorf("exit %d with problems, want 1", code)
	}
	if strings.Contains(out, tok) {
		t.Error("the report shows a token")
	}

	out, code = runCheck(t, data, "--repair")
	if code != 1 || !strings.Contains(out, "4 problems, 3 repaired") {
		t.Errorf("repair: exit %d (the damaged image remains, want 1)\n%s", code, out)
	}
	out, code = runCheck(t, data)
	if code != 1 || !strings.Contains(out, "damaged images (1)") || !strings.Contains(out, "1 problem,") {
		t.Errorf("after repair: exit %d\n%s", code, out)
	}

	// The server serves the sound image, refuses to pass off the damaged
	// one, and counts that.
	s = start(t, data)
	list := s.list(tok)
	if len(list) != 2 {
		t.Fatalf("after repair the list has %v, want the damaged and the sound image", list)
	}
	failures := 0
	for _, p := range list {
		resp, _, err := rawRequest(t, "GET", s.url+"/imageapi/token/"+tok+"/get-image/"+p[1]+"/", map[string]string{"Accept-Encoding": "identity"})
		if err != nil || resp.StatusCode != 200 {
			failures++
		}
	}
	if failures != 1 {
		t.Errorf("%d downloads failed, want 1 (the damaged image)", failures)
	}
	if r := s.get("/metrics"); !strings.Contains(string(r.body), "imagestore_download_failures_total 1") {
		t.Errorf("the damaged read was not counted")
	}
}
