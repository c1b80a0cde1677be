package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/imagestore/imagestore/client"
)

// helpText returns a usage function printing text.
func helpText(text string) func(io.Writer) {
	return func(w io.Writer) { fmt.Fprint(w, text) }
}

func (e *env) userCreate(ctx context.Context, args []string) int {
	fs := e.flagSet("user create", helpText(`Usage: imagestore-cli user create NAME [--password-stdin] [--json]

Creates the user NAME (1 to 150 characters of A-Z, a-z, 0-9 and _) and
prints its token on standard output: keep it, in IMAGESTORE_TOKEN for
instance. With --password-stdin, the first line of standard input is the
user's password (8 to 72 bytes), which the server then asks for before it
hands the token out again.
`))
	passwordStdin := fs.Bool("password-stdin", false, "read the user's password from the first line of standard input")
	asJSON := fs.Bool("json", false, `print {"username": ..., "token": ...}`)
	pos, code, ok := e.parse(fs, args)
	if !ok {
		return code
	}
	if code, ok := e.needArgs(fs, pos, 1, 1, "one NAME"); !ok {
		return code
	}
	password := ""
	if *passwordStdin {
		line, err := bufio.NewReader(io.LimitReader(e.stdin, 4096)).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return e.fail("reading the password", err)
		}
		if password = strings.TrimRight(line, "\r\n"); password == "" {
			return e.usageError(fs.Name(), "--password-stdin: standard input holds no password")
		}
	}
	c, code, ok := e.client(fs, false)
	if !ok {
		return code
	}
	tok, err := c.CreateUser(ctx, pos[0], password)
	if err != nil {
		return e.fail("creating user "+pos[0], err)
	}
	if *asJSON {
		return e.printJSON(map[string]string{"username": pos[0], "token": tok})
	}
	fmt.Fprintln(e.stdout, tok)
	return exitOK
}

func (e *env) tokenRotate(ctx context.Context, args []string) int {
	fs := e.flagSet("token rotate", helpText(`Usage: imagestore-cli token rotate [--json]

Gives the user a new token and prints it on standard output. The old one
stops working at once: update IMAGESTORE_TOKEN.
`))
	asJSON := fs.Bool("json", false, `print {"username": ..., "token": ...}`)
	_, c, code, ok := e.begin(fs, args, 0, 0, "no arguments", true)
	if !ok {
		return code
	}
	tok, err := c.RotateToken(ctx)
	if err != nil {
		return e.fail("rotating the token", err)
	}
	if *asJSON {
		me, err := c.Me(ctx)
		if err != nil {
			return e.fail("rotating the token", err)
		}
		return e.printJSON(map[string]string{"username": me.Username, "token": tok})
	}
	fmt.Fprintln(e.stdout, tok)
	return exitOK
}

func (e *env) whoami(ctx context.Context, args []string) int {
	fs := e.flagSet("whoami", helpText(`Usage: imagestore-cli whoami [--json]

Shows the token's owner: the username, when it was created, and whether
it has a password.
`))
	asJSON := fs.Bool("json", false, "print the user as JSON")
	_, c, code, ok := e.begin(fs, args, 0, 0, "no arguments", true)
	if !ok {
		return code
	}
	me, err := c.Me(ctx)
	if err != nil {
		return e.fail("whoami", err)
	}
	if *asJSON {
		return e.printJSON(me)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "username\t%s\n", me.Username)
	fmt.Fprintf(tw, "created\t%s\n", me.Created.Local().Format(time.DateTime))
	fmt.Fprintf(tw, "password\t%s\n", map[bool]string{true: "yes", false: "no"}[me.HasPassword])
	tw.Flush()
	return exitOK
}

func (e *env) limits(ctx context.Context, args []string) int {
	fs := e.flagSet("limits", helpText(`Usage: imagestore-cli limits [--json]

Shows what the server accepts: the largest upload, the most pixels, the
image types and the largest page of a listing. Needs no token.
`))
	asJSON := fs.Bool("json", false, "print the limits as JSON")
	_, c, code, ok := e.begin(fs, args, 0, 0, "no arguments", false)
	if !ok {
		return code
	}
	l, err := c.Limits(ctx)
	if err != nil {
		return e.fail("limits", err)
	}
	if *asJSON {
		return e.printJSON(l)
	}
	pixels := "no limit"
	if l.MaxPixels > 0 {
		pixels = fmt.Sprint(l.MaxPixels)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "max upload\t%s (%d bytes)\n", humanSize(l.MaxUploadBytes), l.MaxUploadBytes)
	fmt.Fprintf(tw, "max pixels\t%s\n", pixels)
	fmt.Fprintf(tw, "max page size\t%d\n", l.MaxPageSize)
	fmt.Fprintf(tw, "max variant size\t%d pixels\n", l.MaxVariantSize)
	fmt.Fprintf(tw, "accepted types\t%s\n", strings.Join(l.AcceptedTypes, ", "))
	tw.Flush()
	return exitOK
}

func (e *env) ls(ctx context.Context, args []string) int {
	fs := e.flagSet("ls", helpText(`Usage: imagestore-cli ls [--json]

Lists the images in upload order, as a table: id, name, media type, size,
dimensions (width x height in pixels) and creation time (local time).
With --json, prints one JSON object per line and image (JSON Lines), with
every field the server gives: id, name, content_type, size, stored_size,
width, height, sha256, created, updated, url.
`))
	asJSON := fs.Bool("json", false, "print JSON Lines: one image object per line")
	_, c, code, ok := e.begin(fs, args, 0, 0, "no arguments", true)
	if !ok {
		return code
	}
	var tw *tabwriter.Writer
	enc := json.NewEncoder(e.stdout)
	enc.SetEscapeHTML(false)
	if !*asJSON {
		tw = tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tNAME\tTYPE\tSIZE\tDIMENSIONS\tCREATED")
	}
	for img, err := range c.All(ctx, 0) {
		if err != nil {
			// The table, aligned once whole, is not printed.
			return e.fail("listing the images", err)
		}
		if *asJSON {
			if err := enc.Encode(img); err != nil {
				return e.fail("", err)
			}
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%dx%d\t%s\n", img.ID, printable(img.Name), printable(img.ContentType),
			humanSize(img.Size), img.Width, img.Height, img.Created.Local().Format(time.DateTime))
	}
	if tw != nil {
		if err := tw.Flush(); err != nil {
			return e.fail("", err)
		}
	}
	return exitOK
}

func (e *env) info(ctx context.Context, args []string) int {
	fs := e.flagSet("info", helpText(`Usage: imagestore-cli info ID [--json]

Describes the image ID, its ETag included (what replace and rm take with
--if-match).
`))
	fs.ids = true
	asJSON := fs.Bool("json", false, "print the image as JSON")
	pos, c, code, ok := e.begin(fs, args, 1, 1, "one ID", true)
	if !ok {
		return code
	}
	img, err := c.Meta(ctx, pos[0])
	if err != nil {
		return e.fail(pos[0], err)
	}
	if *asJSON {
		return e.printJSON(img)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "id\t%s\n", img.ID)
	fmt.Fprintf(tw, "name\t%s\n", printable(img.Name))
	fmt.Fprintf(tw, "type\t%s\n", printable(img.ContentType))
	fmt.Fprintf(tw, "size\t%s (%d bytes; %d stored)\n", humanSize(img.Size), img.Size, img.StoredSize)
	fmt.Fprintf(tw, "dimensions\t%dx%d\n", img.Width, img.Height)
	fmt.Fprintf(tw, "created\t%s\n", img.Created.Local().Format(time.DateTime))
	fmt.Fprintf(tw, "updated\t%s\n", img.Updated.Local().Format(time.DateTime))
	fmt.Fprintf(tw, "etag\t%s\n", img.ETag())
	tw.Flush()
	return exitOK
}

func (e *env) get(ctx context.Context, args []string) int {
	fs := e.flagSet("get", helpText(`Usage: imagestore-cli get ID [-o FILE|FOLDER/|-] [--force]

Downloads the image ID. Without -o, into the current folder, under the
image's name made safe (no folders, no control characters, no leading
dot; the id if nothing is left). -o FILE writes FILE, -o FOLDER/ writes the
image's name in FOLDER, and -o - writes standard output (not a terminal,
unless --force). An existing file is overwritten only with --force. The
bytes are checked against the image's SHA-256, and a failed download leaves
no file behind. Prints the file written.
`))
	fs.ids = true
	out := fs.String("o", "", "write to `FILE`, into FOLDER/, or - for standard output")
	force := fs.Bool("force", false, "overwrite an existing file; write an image to a terminal")
	pos, code, ok := e.parse(fs, args)
	if !ok {
		return code
	}
	if code, ok := e.needArgs(fs, pos, 1, 1, "one ID"); !ok {
		return code
	}
	id := pos[0]
	c, code, ok := e.client(fs, true)
	if !ok {
		return code
	}
	if *out == "-" {
		if isTerminal(e.stdout) && !*force {
			return e.usageError(fs.Name(), "standard output is a terminal: redirect it, or use --force")
		}
		if _, err := c.Download(ctx, id, e.stdout); err != nil {
			return e.fail(id, err)
		}
		return exitOK
	}
	path := *out
	if st, err := os.Stat(path); path == "" || strings.HasSuffix(path, "/") || (err == nil && st.IsDir()) {
		img, err := c.Meta(ctx, id)
		if err != nil {
			return e.fail(id, err)
		}
		path = filepath.Join(path, safeName(img.Name, img.ID))
	}
	if err := download(ctx, c, id, path, *force); err != nil {
		return e.fail(id, err)
	}
	fmt.Fprintln(e.stdout, printable(path))
	return exitOK
}

// download writes the image id to path: without overwrite, only if path
// does not exist. A failed download leaves nothing behind.
func download(ctx context.Context, c *client.Client, id, path string, overwrite bool) (err error) {
	var f *os.File
	if overwrite {
		// Into a new file, renamed over path once whole.
		f, err = os.CreateTemp(filepath.Dir(path), ".imagestore-cli-*")
	} else {
		f, err = os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if errors.Is(err, os.ErrExist) {
			return fmt.Errorf("%s exists: use --force to overwrite it, or -o to choose another file", path)
		}
	}
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if _, err = c.Download(ctx, id, f); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if overwrite {
		if err = os.Chmod(f.Name(), 0o644); err == nil {
			err = os.Rename(f.Name(), path)
		}
	}
	return err
}

// safeName is a server-supplied image name made safe to create in the
// current folder: no folder, no control characters, no leading dot (no
// hidden files, no "." or ".."); the id if nothing is left.
func safeName(name, id string) string {
	if i := strings.LastIndexAny(name, `/\`); i >= 0 {
		name = name[i+1:]
	}
	name = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == unicode.ReplacementChar {
			return '_'
		}
		return r
	}, strings.ToValidUTF8(name, "_"))
	name = strings.TrimSpace(name)
	if strings.HasPrefix(name, ".") {
		name = "_" + name[1:]
	}
	if name == "" {
		name = safeName(id, "image")
	}
	return name
}

func (e *env) replace(ctx context.Context, args []string) int {
	fs := e.flagSet("replace", helpText(`Usage: imagestore-cli replace ID FILE [--if-match ETAG] [--name NAME | --keep-name] [--json]

Replaces the content of the image ID with FILE, keeping its id and its
place in the list. The image takes FILE's name, unless --name or
--keep-name says otherwise. With --if-match (an ETag as info shows it, or
the bare SHA-256), only while the image is unchanged since: otherwise
nothing changes and the exit code is 5. Prints the image's id and name (and
with --json, the whole image, its new sha256 included).
`))
	fs.ids = true
	ifMatch := fs.String("if-match", "", "replace only while the image has this `ETag`")
	name := fs.String("name", "", "rename the image to `NAME`")
	keepName := fs.Bool("keep-name", false, "keep the image's name")
	asJSON := fs.Bool("json", false, "print the image as JSON")
	pos, code, ok := e.parse(fs, args)
	if !ok {
		return code
	}
	if code, ok := e.needArgs(fs, pos, 2, 2, "ID and FILE"); !ok {
		return code
	}
	if *keepName && *name != "" {
		return e.usageError(fs.Name(), "--name and --keep-name: choose one")
	}
	id, file := pos[0], pos[1]
	c, code, ok := e.client(fs, true)
	if !ok {
		return code
	}
	f, err := os.Open(file)
	if err != nil {
		return e.fail("", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return e.fail("", err)
	}
	if !st.Mode().IsRegular() {
		return e.fail("", fmt.Errorf("%s is not a regular file", file))
	}
	opts := &client.ReplaceOptions{Name: *name, IfMatch: normalizeETag(*ifMatch)}
	if opts.Name == "" && !*keepName {
		opts.Name = filepath.Base(file)
	}
	img, err := c.Replace(ctx, id, f, st.Size(), opts)
	if err != nil {
		return e.fail(id, err)
	}
	if *asJSON {
		return e.printJSON(img)
	}
	fmt.Fprintf(e.stdout, "%s\t%s\n", img.ID, printable(img.Name))
	return exitOK
}

func (e *env) rm(ctx context.Context, args []string) int {
	fs := e.flagSet("rm", helpText(`Usage: imagestore-cli rm ID... [--if-match ETAG]

Deletes the images. With --if-match (one ID only), only while the image
is unchanged since the ETag was read: otherwise nothing changes and the
exit code is 5. Says nothing on success; a failure for one id does not
stop the others.
`))
	fs.ids = true
	ifMatch := fs.String("if-match", "", "delete only while the image has this `ETag`")
	pos, code, ok := e.parse(fs, args)
	if !ok {
		return code
	}
	if code, ok := e.needArgs(fs, pos, 1, -1, "at least one ID"); !ok {
		return code
	}
	if *ifMatch != "" && len(pos) > 1 {
		return e.usageError(fs.Name(), "--if-match takes one ID")
	}
	c, code, ok := e.client(fs, true)
	if !ok {
		return code
	}
	var codes []int
	for _, id := range pos {
		if err := c.Delete(ctx, id, normalizeETag(*ifMatch)); err != nil {
			codes = append(codes, e.fail(id, err))
		}
	}
	return combine(codes)
}

var bareSHA256 = regexp.MustCompile(`^[0-9a-f]{64}$`)

// normalizeETag quotes a bare SHA-256, as the server's ETags are.
func normalizeETag(tag string) string {
	tag = strings.TrimSpace(tag)
	if bareSHA256.MatchString(tag) {
		return `"` + tag + `"`
	}
	return tag
}

// printJSON writes v as one line of JSON.
func (e *env) printJSON(v any) int {
	enc := json.NewEncoder(e.stdout)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return e.fail("", err)
	}
	return exitOK
}

// printable replaces the control characters of a server-supplied string,
// so that it cannot drive the terminal.
func printable(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return '?'
		}
		return r
	}, s)
}

// humanSize is n bytes in B, KiB, MiB or GiB.
func humanSize(n int64) string {
	if n < 1024 {
		return fmt.Sprintf("%d B", n)
	}
	v, unit := float64(n)/1024, "KiB"
	for _, u := range []string{"MiB", "GiB", "TiB"} {
		if v < 1024 {
			break
		}
		v, unit = v/1024, u
	}
	return fmt.Sprintf("%.1f %s", v, unit)
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
