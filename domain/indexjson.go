package domain

import (
	"strconv"
	"time"
	"unicode/utf8"
)

// appendIndexJSON appends the index record of imgs, in the JSON that
// encoding/json reads back into an index, without reflection: on a shared
// store a user's whole list is written on every change of it, and
// encoding/json spent more time on that than the rest of an upload's work
// in the server.
func appendIndexJSON(b []byte, imgs []Image) []byte {
	b = append(b, `{"images":[`...)
	return appendImagesJSON(b, imgs)
}

// appendLoggedIndexJSON appends the index record of imgs that says the
// changes after it are in log records, from seq+1 on (see indexlog.go).
func appendLoggedIndexJSON(b []byte, seq uint64, imgs []Image) []byte {
	b = append(b, `{"log":true,"seq":`...)
	b = strconv.AppendUint(b, seq, 10)
	b = append(b, `,"images":[`...)
	return appendImagesJSON(b, imgs)
}

// appendImagesJSON appends imgs as the elements of a JSON array, and the
// end of the array and of its object.
func appendImagesJSON(b []byte, imgs []Image) []byte {
	for i := range imgs {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendImageJSON(b, &imgs[i])
	}
	return append(b, "]}"...)
}

func appendImageJSON(b []byte, img *Image) []byte {
	b = append(b, `{"id":`...)
	b = appendJSONString(b, img.ID)
	b = append(b, `,"name":`...)
	b = appendJSONString(b, img.Name)
	b = append(b, `,"type":`...)
	b = appendJSONString(b, img.Type)
	b = append(b, `,"size":`...)
	b = strconv.AppendInt(b, img.Size, 10)
	b = append(b, `,"stored_size":`...)
	b = strconv.AppendInt(b, img.StoredSize, 10)
	b = append(b, `,"sha256":`...)
	b = appendJSONString(b, img.SHA256)
	b = append(b, `,"width":`...)
	b = strconv.AppendInt(b, img.Width, 10)
	b = append(b, `,"height":`...)
	b = strconv.AppendInt(b, img.Height, 10)
	b = append(b, `,"created":"`...)
	b = img.Created.AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","updated":"`...)
	b = img.Updated.AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","blob":`...)
	b = appendJSONString(b, img.Blob)
	return append(b, '}')
}

// appendJSONString appends s as a JSON string: quotes, backslashes and
// control characters escaped, and invalid UTF-8 replaced by U+FFFD, as
// encoding/json does.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	// Ids, hashes and blob names, and most names, have nothing to escape:
	// find that with one table lookup a byte and copy them whole.
	i := 0
	for i < len(s) && jsonPlain[s[i]] {
		i++
	}
	if i == len(s) {
		b = append(b, s...)
		return append(b, '"')
	}
	start := 0
	for i < len(s) { // from the first byte that needs a look
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			i++
			continue
		}
		if c < utf8.RuneSelf {
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i++
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// jsonPlain marks the bytes a JSON string holds as they are: printable
// ASCII but the quote and the backslash.
var jsonPlain = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()
