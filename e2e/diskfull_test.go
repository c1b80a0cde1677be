package e2e

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// smallDisk mounts a tmpfs of the given size for the test: a real file
// system that really fills up.
func smallDisk(t *testing.T, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting a small tmpfs needs root; the disk-full tests did not run")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs here (%v: %s); the disk-full tests did not run", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
	return dir
}

// bigImage is a valid PNG followed by n random bytes (allowed after its
// end): it does not compress, so it really takes n bytes on disk.
func bigImage(t *testing.T, n int) []byte {
	tail := make([]byte, n)
	rand.Read(tail)
	return append(fixture(t, "png-rgb.png"), tail...)
}

func tempFiles(t *testing.T, root string) []string {
	var found []string
	filepath.Walk(root, func(p string, info os.FileInfo, err error) error {
		if err == nil && strings.HasPrefix(info.Name(), ".tmp-") {
			found = append(found, p)
		}
		return nil
	})
	return found
}

// TestDiskFullReal fills a small file system: the upload that meets ENOSPC
// gets 507, leaves no temporary file, and harms nothing stored; freeing
// space makes uploads work again.
func TestDiskFullReal(t *testing.T) {
	disk := smallDisk(t, "3m")
	s := start(t, filepath.Join(disk, "data"))
	tok := s.newUser("full")
	stored := map[string][]byte{}
	var full response
	for i := 0; i < 40; i++ {
		img := bigImage(t, 256<<10)
		name := fmt.Sprintf("big%02d.png", i)
		r := s.upload(tok, name, img)
		if r.status == 507 {
			full = r
			break
		}
		if r.status != 201 {
			t.Fatalf("upload %d: %v", i, r)
		}
		var id string
		fmt.Sscanf(string(r.body), `{"File ID":%q}`, &id)
		stored[id] = img
	}
	if full.status != 507 || !strings.Contains(string(full.body), "Insufficient storage") {
		t.Fatalf("the disk never filled up: %d images stored, last answer %v", len(stored), full)
	}
	t.Logf("disk full after %d images of 256 KiB: %s", len(stored), full.body)
	if left := tempFiles(t, disk); len(left) > 0 {
		t.Errorf("temporary files left after ENOSPC: %v", left)
	}
	for id, want := range stored {
		if r := s.get("/imageapi/token/" + tok + "/get-image/" + id + "/"); !bytes.Equal(r.body, want) {
			t.Fatalf("image %s damaged by the full disk: %d", id, r.status)
		}
	}
	if got := len(s.list(tok)); got != len(stored) {
		t.Errorf("%d images listed, want the %d acknowledged", got, len(stored))
	}
	// Deleting frees space; uploads work again.
	n := 0
	for id := range stored {
		if n == 3 {
			break
		}
		if r := s.do("DELETE", "/imageapi/token/"+tok+"/delete-image/"+id+"/", nil, nil); r.status != 200 {
			t.Fatalf("delete on a full disk: %v", r)
		}
		delete(stored, id)
		n++
	}
	if r := s.upload(tok, "after.png", bigImage(t, 64<<10)); r.status != 201 {
		t.Fatalf("upload after freeing space: %v", r)
	}
}

// TestDiskWatermark: below --min-free, uploads and replacements get 507
// with a clear body before anything is written, while reads and deletions
// keep working and /readyz reports it.
func TestDiskWatermark(t *testing.T) {
	data := t.TempDir()
	s := start(t, data)
	tok := s.newUser("mark")
	id := s.uploadID(tok, "a.png", fixture(t, "png-rgb.png"))
	s.uploadID(tok, "b.png", fixture(t, "png-palette.png"))
	s.stop()

	s = start(t, data, "--min-free", "999999GiB")
	for _, r := range []response{
		s.upload(tok, "c.png", fixture(t, "png-rgb.png")),
		s.sendForm("PATCH", "/imageapi/token/"+tok+"/update-image/"+id+"/", formPart{"f", "d.png", fixture(t, "gif-still.gif")}),
	} {
		if r.status != 507 || !strings.Contains(string(r.body), "Insufficient storage") {
			t.Errorf("write below the watermark: %v, want 507", r)
		}
	}
	if r := s.get("/imageapi/token/" + tok + "/get-image/" + id + "/"); !bytes.Equal(r.body, fixture(t, "png-rgb.png")) {
		t.Errorf("read below the watermark: %d", r.status)
	}
	if r := s.do("DELETE", "/imageapi/token/"+tok+"/delete-image/"+id+"/", nil, nil); r.status != 200 {
		t.Errorf("delete below the watermark: %v", r)
	}
	if r := s.get("/readyz"); r.status != 503 || !strings.Contains(string(r.body), "free_space") {
		t.Errorf("/readyz below the watermark: %v", r)
	}
	if got := s.list(tok); len(got) != 1 || got[0][0] != "b.png" {
		t.Errorf("list = %v, want only b.png", got)
	}
}
