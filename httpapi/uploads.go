package httpapi

import (
	"errors"
	"net/http"
	"sync"
	"time"
)

// DefaultUploadWait is how long an upload may wait for its turn before
// the server answers 503, unless Options.UploadWait says otherwise.
const DefaultUploadWait = 30 * time.Second

// errBusy: no turn for an upload came within uploadWait.
var errBusy = errors.New("too many uploads in progress")

// uploadSlots bounds the uploads in progress: MaxUploads in all, and a
// quarter of that (at least 2) per client address, so that a few slow
// clients cannot take every turn.
type uploadSlots struct {
	all       chan struct{}
	perClient int

	mu      sync.Mutex
	clients map[string]chan struct{}
	waiting map[string]int // requests holding or waiting for a client's slot
}

func newUploadSlots(n int) *uploadSlots {
	return &uploadSlots{
		all:       make(chan struct{}, n),
		perClient: max(2, n/4),
		clients:   map[string]chan struct{}{},
		waiting:   map[string]int{},
	}
}

func (u *uploadSlots) clientSlots(client string, delta int) chan struct{} {
	u.mu.Lock()
	defer u.mu.Unlock()
	ch, ok := u.clients[client]
	if !ok {
		ch = make(chan struct{}, u.perClient)
		u.clients[client] = ch
	}
	u.waiting[client] += delta
	if u.waiting[client] == 0 {
		delete(u.clients, client)
		delete(u.waiting, client)
	}
	return ch
}

// uploadTurn waits for an upload's turn, so that the memory and file
// descriptors uploads hold stay bounded however many clients send at once.
// It returns a release function; or errBusy after Options.UploadWait, or the
// request's error if the client left while waiting.
func (s *Server) uploadTurn(r *http.Request) (release func(), err error) {
	client := clientOf(r)
	mine := s.slots.clientSlots(client, 1)
	timeout := time.NewTimer(s.opts.UploadWait)
	defer timeout.Stop()
	select {
	case mine <- struct{}{}:
	case <-timeout.C:
		s.slots.clientSlots(client, -1)
		return nil, errBusy
	case <-r.Context().Done():
		s.slots.clientSlots(client, -1)
		return nil, r.Context().Err()
	}
	select {
	case s.slots.all <- struct{}{}:
		return func() {
			<-s.slots.all
			<-mine
			s.slots.clientSlots(client, -1)
		}, nil
	case <-timeout.C:
		err = errBusy
	case <-r.Context().Done():
		err = r.Context().Err()
	}
	<-mine
	s.slots.clientSlots(client, -1)
	return nil, err
}
