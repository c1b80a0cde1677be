package domain

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/imagestore/imagestore/storage/memstore"
)

// TestIndexBatchSurvivesPanic: a change that panics (a bug) fails its
// batch, whichever request leads it: each change in it hears an error,
// none hears success, nothing crashes, and the user's list takes further
// changes.
func TestIndexBatchSurvivesPanic(t *testing.T) {
	svc, err := New(memstore.New(), DefaultConfig)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	uh := userHashOf("panicky")
	add := func(name string) func(*index) error {
		return func(ix *index) error {
			ix.add(Image{ID: NewID(), Name: name, Blob: newBlobName(), Created: time.Now()})
			return nil
		}
	}
	// Hold the list's turn so that the next two changes share a batch.
	hold, release := make(chan struct{}), make(chan struct{})
	go svc.updateIndex(ctx, uh, func(ix *index) error {
		close(hold)
		<-release
		return add("first")(ix)
	})
	<-hold
	panicked := make(chan error, 1)
	go func() {
		panicked <- svc.updateIndex(ctx, uh, func(*index) error { panic("a bug in a change") })
	}()
	other := make(chan error, 1)
	go func() { other <- svc.updateIndex(ctx, uh, add("second")) }()
	time.Sleep(50 * time.Millisecond) // both queued behind the first
	close(release)
	select {
	case err := <-panicked:
		if !errors.Is(err, errNotWritten) {
			t.Errorf("the change that panicked: %v, want errNotWritten", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the panicking change never returned")
	}
	select {
	case err := <-other:
		if !errors.Is(err, errNotWritten) && err != nil {
			t.Errorf("the other change of the batch: %v", err)
		}
		if err == nil {
			// Only if it ran in a batch of its own; then it was written.
			ix, _, _ := svc.loadIndex(ctx, uh)
			if ix.byName("second") < 0 {
				t.Error("reported written, but not in the list")
			}
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the other change never heard its outcome")
	}
	done := make(chan error, 1)
	go func() { done <- svc.updateIndex(ctx, uh, add("third")) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("a change after the panic: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the list stayed locked after a panic")
	}
	ix, _, _ := svc.loadIndex(ctx, uh)
	if ix.byName("first") < 0 || ix.byName("third") < 0 {
		t.Errorf("list after the panic: %+v", ix.Images)
	}
}
