package memstore_test

import (
	"testing"

	"github.com/imagestore/imagestore/storage"
	"github.com/imagestore/imagestore/storage/memstore"
	"github.com/imagestore/imagestore/storage/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storage.Store { return memstore.New() })
}
