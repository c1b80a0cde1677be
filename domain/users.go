package domain

import (
	"context"
	"errors"
	"sync"

	"golang.org/x/crypto/bcrypt"

	"github.com/imagestore/imagestore/storage"
)

const (
	// MinPasswordLen and MaxPasswordLen bound passwords, in bytes; bcrypt
	// reads no more than 72.
	MinPasswordLen = 8
	MaxPasswordLen = 72
)

// bcryptCost is the work factor of password hashes: about 50 ms each on
// current hardware. Tests may lower it.
var bcryptCost = bcrypt.DefaultCost

func hashPassword(password string) (string, error) {
	if len(password) < MinPasswordLen || len(password) > MaxPasswordLen {
		return "", ErrWeakPassword
	}
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcryptCost)
	if err != nil {
		return "", err
	}
	return string(h), nil
}

// CheckPassword reports whether password is the user's. A user without a
// password has none that matches.
func CheckPassword(u User, password string) bool {
	if u.PasswordHash == "" {
		return false
	}
	return bcrypt.CompareHashAndPassword([]byte(u.PasswordHash), []byte(password)) == nil
}

// RetrievalMode is the operator's rule for retrieving a lost token by
// username (the seed's retrieve-token).
type RetrievalMode string

const (
	// RetrievalOpen answers anyone for a user without a password (the
	// original's behaviour), and requires the password of a user with one.
	RetrievalOpen RetrievalMode = "open"
	// RetrievalPassword always requires the user's password; a user
	// without one cannot retrieve the token.
	RetrievalPassword RetrievalMode = "password"
	// RetrievalOff refuses every retrieval.
	RetrievalOff RetrievalMode = "off"
)

// ParseRetrievalMode checks a mode's name.
func ParseRetrievalMode(s string) (RetrievalMode, error) {
	switch m := RetrievalMode(s); m {
	case RetrievalOpen, RetrievalPassword, RetrievalOff:
		return m, nil
	}
	return "", errors.New("token retrieval must be open, password or off")
}

// RetrieveToken returns the user's token under the configured retrieval
// mode. password is what the client gave ("" for none; given says whether
// it gave credentials at all). Errors: ErrRetrievalDisabled,
// ErrUserNotFound, ErrPasswordRequired, ErrWrongPassword. Without the right
// password, an unknown user and a wrong password look alike.
func (s *Service) RetrieveToken(ctx context.Context, username, password string, given bool) (User, error) {
	mode := s.cfg.Retrieval
	if mode == "" {
		mode = RetrievalOpen
	}
	if mode == RetrievalOff {
		return User{}, ErrRetrievalDisabled
	}
	u, err := s.User(ctx, username)
	needPassword := mode == RetrievalPassword || (err == nil && u.HasPassword())
	switch {
	case needPassword && !given:
		return User{}, ErrPasswordRequired
	case needPassword && (err != nil || !u.HasPassword()):
		// Do not reveal whether the user exists or has a password, not
		// even by answering sooner: spend what a real check would.
		bcrypt.CompareHashAndPassword(dummyHash(), []byte(password))
		if err != nil && !errors.Is(err, ErrUserNotFound) {
			return User{}, err
		}
		return User{}, ErrWrongPassword
	case err != nil:
		return User{}, err
	case needPassword && !CheckPassword(u, password):
		return User{}, ErrWrongPassword
	}
	return u, nil
}

// dummyHash is a bcrypt hash of nothing anyone knows, at the cost of real
// ones, for checks that must take as long as a real one.
var dummyHash = sync.OnceValue(func() []byte {
	h, _ := bcrypt.GenerateFromPassword([]byte(NewToken()+NewToken()), bcryptCost)
	return h
})

// RotateToken gives the user a new token; the old one stops working at
// once. It returns the user with the new token, or ErrUnauthorized if the
// token the caller holds is no longer the user's.
func (s *Service) RotateToken(ctx context.Context, u User) (User, error) {
	newToken, err := s.claimToken(ctx, u.Name)
	if err != nil {
		return User{}, err
	}
	key := userKey(userHashOf(u.Name))
	for {
		var cur User
		etag, err := s.getJSON(ctx, key, &cur)
		if err == nil && cur.Token != u.Token {
			err = ErrUnauthorized
		}
		if err == nil {
			cur.Token = newToken
			err = s.putJSON(ctx, key, cur, storage.Cond{IfMatch: etag})
			s.userWritten(userHashOf(u.Name))
			if errors.Is(err, storage.ErrPrecondition) {
				continue
			}
		}
		if err != nil {
			s.store.Delete(context.WithoutCancel(ctx), tokenKey(newToken))
			return User{}, err
		}
		// Authenticate checks the user record, so the old token already
		// fails; its record goes too.
		s.store.Delete(context.WithoutCancel(ctx), tokenKey(u.Token))
		return cur, nil
	}
}
