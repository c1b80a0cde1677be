package filestore_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imagestore/imagestore/storage"
	"github.com/imagestore/imagestore/storage/filestore"
	"github.com/imagestore/imagestore/storage/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storage.Store {
		s, err := filestore.Open(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	})
}

func TestSecondOpenIsRefused(t *testing.T) {
	dir := t.TempDir()
	s, err := filestore.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	_, err = filestore.Open(dir)
	if !errors.Is(err, filestore.ErrLocked) {
		t.Fatalf("second Open error = %v, want ErrLocked", err)
	}
	if !strings.Contains(err.Error(), "another imagestore process") {
		t.Errorf("message %q does not say what is wrong", err)
	}
	s.Close()
	s2, err := filestore.Open(dir)
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	s2.Close()
}

// TestLockReleasedWhenHolderIsKilled starts a process that holds the folder,
// kills it with SIGKILL, and opens the folder again: a crash never leaves a
// stale lock behind.
func TestLockReleasedWhenHolderIsKilled(t *testing.T) {
	if dir := os.Getenv("FILESTORE_HOLD"); dir != "" {
		if _, err := filestore.Open(dir); err != nil {
			os.Exit(3)
		}
		os.Stdout.WriteString("held\n")
		time.Sleep(time.Minute)
		os.Exit(0)
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestLockReleasedWhenHolderIsKilled$")
	cmd.Env = append(os.Environ(), "FILESTORE_HOLD="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	if _, err := out.Read(buf); err != nil || string(buf) != "held\n" {
		t.Fatalf("holder did not start: %q %v", buf, err)
	}
	if _, err := filestore.Open(dir); !errors.Is(err, filestore.ErrLocked) {
		t.Fatalf("Open while another process holds the folder: %v, want ErrLocked", err)
	}
	cmd.Process.Kill()
	cmd.Wait()
	s, err := filestore.Open(dir)
	if err != nil {
		t.Fatalf("Open after the holder was killed: %v", err)
	}
	s.Close()
}

func TestOpenRemovesTemporaryFiles(t *testing.T) {
	dir := t.TempDir()
	s, err := filestore.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := s.Put(ctx, "blobs/u/a", bytes.NewReader([]byte("kept")), storage.Cond{}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	// What a crash between create and rename leaves.
	leftover := filepath.Join(dir, "objects", "blobs", "u", ".tmp-123456")
	if err := os.WriteFile(leftover, []byte("partial"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err = filestore.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := os.Stat(leftover); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("temporary file survived Open: %v", err)
	}
	rc, _, err := s.Get(ctx, "blobs/u/a")
	if err != nil {
		t.Fatal(err)
	}
	rc.Close()
}

// TestValuesArePlainFiles checks the layout that operators see: one file per
// key under objects/, holding exactly the value, and no temporary files
// after a write, successful or not.
func TestValuesArePlainFiles(t *testing.T) {
	dir := t.TempDir()
	s, err := filestore.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	if _, err := s.Put(ctx, "x/y.json", strings.NewReader("{}"), storage.Cond{}); err != nil {
		t.Fatal(err)
	}
	s.Put(ctx, "x/y.json", strings.NewReader("{}"), storage.Cond{IfAbsent: true}) // refused
	b, err := os.ReadFile(filepath.Join(dir, "objects", "x", "y.json"))
	if err != nil || string(b) != "{}" {
		t.Fatalf("file holds %q, %v", b, err)
	}
	ents, _ := os.ReadDir(filepath.Join(dir, "objects", "x"))
	if len(ents) != 1 {
		t.Fatalf("folder holds %d entries, want 1 (no temporary files left)", len(ents))
	}
}

// faultyStore opens a store in a new folder that fails each operation's
// step named step with a disk error while *armed is set.
func faultyStore(t *testing.T, step string) (s *filestore.Store, armed *bool) {
	t.Helper()
	armed = new(bool)
	s, err := filestore.OpenWith(t.TempDir(), filestore.Options{Fault: func(st, key string) error {
		if *armed && st == step {
			return errors.New("disk error")
		}
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	return s, armed
}

// TestFaultAtEachStep fails each step of a replacement in turn: before the
// rename the old value stays; after it (the folder's sync) the new one is
// whole; a failed removal keeps the value; never a temporary file left.
//
// It fails each step of the creation of a new key too.
func TestFaultAtEachStep(t *testing.T) {
	ctx := context.Background()
	for _, step := range []string{"create", "write", "sync", "rename", "syncdir", "delete"} {
		s, armed := faultyStore(t, step)
		if _, err := s.Put(ctx, "k", strings.NewReader("old value"), storage.Cond{}); err != nil {
			t.Fatal(err)
		}
		*armed = true
		var opErr error
		if step == "delete" {
			opErr = s.Delete(ctx, "k")
		} else {
			_, opErr = s.Put(ctx, "k", strings.NewReader("new value!"), storage.Cond{})
		}
		*armed = false
		if opErr == nil {
			t.Errorf("%s: the injected fault was not reported", step)
		}
		rc, _, err := s.Get(ctx, "k")
		if err != nil {
			t.Fatalf("%s: the key is gone: %v", step, err)
		}
		b, _ := io.ReadAll(rc)
		rc.Close()
		want := "old value"
		if step == "syncdir" {
			want = "new value!" // renamed, then the folder's sync failed
		}
		if string(b) != want {
			t.Errorf("%s: value %q, want %q", step, b, want)
		}
		if left, _ := s.Leftovers(); len(left) > 0 {
			t.Errorf("%s: temporary files left: %v", step, left)
		}

		// A new key: absent after a fault before its commit, present
		// (and reported as failed) after one past it.
		if step != "delete" {
			*armed = true
			_, err := s.Put(ctx, "new", strings.NewReader("fresh"), storage.Cond{IfAbsent: true})
			*armed = false
			if err == nil {
				t.Errorf("%s: the injected fault in a new key's write was not reported", step)
			}
			_, serr := s.Stat(ctx, "new")
			if exists := serr == nil; exists != (step == "syncdir") {
				t.Errorf("%s: new key exists = %v after the fault", step, exists)
			}
			if left, _ := s.Leftovers(); len(left) > 0 {
				t.Errorf("%s: temporary files left after a new key's write: %v", step, left)
			}
		}
		s.Close()
	}
}

// TestAppendFaults fails each step of an append in turn: a value that was
// there is left exactly as it was (its file truncated back after a failed
// write or sync); a new key's bytes are there only if the fault came
// after their sync (the folder's), when the append reports the error all
// the same.
func TestAppendFaults(t *testing.T) {
	ctx := context.Background()
	for _, step := range []string{"create", "write", "sync", "syncdir"} {
		s, armed := faultyStore(t, step)
		if err := s.Append(ctx, "log/k", []byte("old;")); err != nil {
			t.Fatal(err)
		}
		*armed = true
		err := s.Append(ctx, "log/k", []byte("new;"))
		*armed = false
		switch step {
		case "create", "syncdir": // steps an existing key's append skips
			if err != nil {
				t.Errorf("%s: an append to an existing key failed: %v", step, err)
			}
		default:
			if err == nil {
				t.Errorf("%s: the injected fault was not reported", step)
			}
			rc, _, gerr := s.Get(ctx, "log/k")
			if gerr != nil {
				t.Fatal(gerr)
			}
			b, _ := io.ReadAll(rc)
			rc.Close()
			if string(b) != "old;" {
				t.Errorf("%s: value %q after a failed append, want %q", step, b, "old;")
			}
		}

		*armed = true
		err = s.Append(ctx, "log/new", []byte("fresh;"))
		*armed = false
		if err == nil {
			t.Errorf("%s: the injected fault in a new key's append was not reported", step)
		}
		a, serr := s.Stat(ctx, "log/new")
		switch {
		case step == "syncdir" && (serr != nil || a.Size != int64(len("fresh;"))):
			t.Errorf("%s: new key after a fault past its sync: %+v, %v", step, a, serr)
		case step != "syncdir" && serr == nil && a.Size != 0:
			t.Errorf("%s: new key holds %d bytes after a failed append", step, a.Size)
		}
		s.Close()
	}
}
