// Command imagestore-cli is a command-line client of an imagestore
// server's /api/v1 API: it creates users, uploads files and folders,
// lists, downloads, replaces and deletes images. Run it with -h for the
// commands, and see usage below for the exit codes scripts can rely on.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/signal"
	"regexp"
	"strings"
	"syscall"

	"github.com/imagestore/imagestore/client"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// Exit codes.
const (
	exitOK          = 0
	exitFailed      = 1 // a request failed for another reason
	exitUsage       = 2
	exitNotFound    = 3
	exitAuth        = 4 // 401 (or 403), or no token at all
	exitConflict    = 5 // 409, 412
	exitRefused     = 6 // 413, 406, 415: too large or not an image
	exitUnavailable = 7 // no answer, or a 5xx (507 included)
	exitRateLimited = 8 // 429
)

const defaultServer = "http://127.0.0.1:8000"

const usage = `Usage: imagestore-cli [--server URL] [--token TOKEN] COMMAND [flags] [args]

A client of an imagestore server's /api/v1 API.

Commands:
  user create NAME [--password-stdin]   create a user and print its token
  upload FILE|FOLDER...                 upload files, and the images in folders
  ls                                    list the images
  info ID                               describe an image (its ETag included)
  get ID [-o FILE|-]                    download an image
  replace ID FILE [--if-match ETAG]     replace an image's content
  rm ID... [--if-match ETAG]            delete images
  whoami                                show the token's owner
  token rotate                          replace the token with a new one, and print it
  limits                                show what the server accepts
  help [COMMAND]                        show a command's help (or COMMAND -h)

Configuration, as flags (before or after the command) or from the environment:
  --server URL     IMAGESTORE_URL     the server (default ` + defaultServer + `)
  --token TOKEN    IMAGESTORE_TOKEN   the user's token; prefer the environment:
                                      a flag can be seen by other users (ps)
The token is never printed, except by user create and token rotate.

Exit codes:
  0  success
  1  a request failed for another reason (or a local file could not be read or written)
  2  usage error
  3  not found (no image has this id)
  4  authentication failed (401), or no token
  5  conflict: the name or username is taken (409), or the image changed (412, --if-match)
  6  too large, or not an image (413, 406, 415)
  7  the server is unavailable: no answer, or a 5xx status (507: its disk is full)
  8  rate limited (429); try again later
With several files or ids, the exit code is that of the failures if they
all have the same one, and 1 otherwise.
`

// env is one run of the command: its input, output and configuration.
type env struct {
	getenv         func(string) string
	stdin          io.Reader
	stdout, stderr io.Writer

	server, token          string
	serverFlag, tokenFlag  *string // set by a flag, or nil
	warnedAboutTokenOnFlag bool
}

// run runs the command line args (without the program's name) and returns
// the exit code.
func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) int {
	e := &env{getenv: getenv, stdin: stdin, stdout: stdout, stderr: stderr}
	fs := e.flagSet("imagestore-cli", helpText(usage))
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(e.stdout, usage)
			return exitOK
		}
		return e.usageError("", err.Error())
	}
	args = fs.Args()
	if len(args) == 0 {
		fmt.Fprint(e.stderr, "imagestore-cli: want a command\n\n"+usage)
		return exitUsage
	}
	cmd, args := args[0], args[1:]
	switch cmd {
	case "help":
		if len(args) == 0 {
			fmt.Fprint(e.stdout, usage)
			return exitOK
		}
		return e.dispatch(ctx, args[0], append(args[1:], "-h"))
	}
	return e.dispatch(ctx, cmd, args)
}

// dispatch runs the command cmd.
func (e *env) dispatch(ctx context.Context, cmd string, args []string) int {
	switch cmd {
	case "user":
		return e.group(ctx, "user", args, map[string]func(context.Context, []string) int{"create": e.userCreate})
	case "token":
		return e.group(ctx, "token", args, map[string]func(context.Context, []string) int{"rotate": e.tokenRotate})
	case "upload":
		return e.upload(ctx, args)
	case "ls", "list":
		return e.ls(ctx, args)
	case "info":
		return e.info(ctx, args)
	case "get":
		return e.get(ctx, args)
	case "replace":
		return e.replace(ctx, args)
	case "rm":
		return e.rm(ctx, args)
	case "whoami":
		return e.whoami(ctx, args)
	case "limits":
		return e.limits(ctx, args)
	}
	return e.usageError("", fmt.Sprintf("unknown command %q", cmd))
}

// group runs a subcommand of cmd ("user create").
func (e *env) group(ctx context.Context, cmd string, args []string, subs map[string]func(context.Context, []string) int) int {
	names := make([]string, 0, len(subs))
	for n := range subs {
		names = append(names, cmd+" "+n)
	}
	if len(args) > 0 {
		if f, ok := subs[args[0]]; ok {
			return f(ctx, args[1:])
		}
		if args[0] == "-h" || args[0] == "-help" || args[0] == "--help" {
			fmt.Fprintf(e.stdout, "Commands: %s (run one with -h for its help)\n", strings.Join(names, ", "))
			return exitOK
		}
	}
	return e.usageError("", fmt.Sprintf("%s: want a subcommand: %s", cmd, strings.Join(names, ", ")))
}

// usageError reports a usage error of the command cmd ("" for none) and
// returns its exit code.
func (e *env) usageError(cmd, msg string) int {
	fmt.Fprintf(e.stderr, "imagestore-cli: %s\n", msg)
	if cmd != "" {
		fmt.Fprintf(e.stderr, "Run 'imagestore-cli %s -h' for help.\n", cmd)
	} else {
		fmt.Fprintln(e.stderr, "Run 'imagestore-cli -h' for help.")
	}
	return exitUsage
}

// errorf reports an error on standard error.
func (e *env) errorf(format string, args ...any) {
	fmt.Fprintf(e.stderr, "imagestore-cli: "+format+"\n", args...)
}

// fail reports err, which happened doing what, and returns its exit code.
func (e *env) fail(what string, err error) int {
	e.errorf("%s", describe(what, err))
	return exitCode(err)
}

// describe is err as a line: what failed, and why, in the problem
// document's words when the server sent one.
func describe(what string, err error) string {
	msg := err.Error()
	var ce *client.Error
	if errors.As(err, &ce) && ce.RetryAfter > 0 {
		msg += fmt.Sprintf("; retry after %s", ce.RetryAfter)
	}
	if what == "" {
		return msg
	}
	return what + ": " + msg
}

// exitCode is the exit code that err calls for.
func exitCode(err error) int {
	var ce *client.Error
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, client.ErrNotFound):
		return exitNotFound
	case errors.As(err, &ce) && (ce.StatusCode == 401 || ce.StatusCode == 403), errors.Is(err, errNoToken):
		return exitAuth
	case errors.Is(err, client.ErrConflict), errors.Is(err, client.ErrPreconditionFailed):
		return exitConflict
	case errors.Is(err, client.ErrTooLarge), errors.Is(err, client.ErrNotImage):
		return exitRefused
	case errors.Is(err, client.ErrRateLimited):
		return exitRateLimited
	case errors.Is(err, client.ErrUnavailable):
		return exitUnavailable
	}
	return exitFailed
}

// combine is the exit code of several failures: theirs if they agree, 1
// otherwise.
func combine(codes []int) int {
	if len(codes) == 0 {
		return exitOK
	}
	for _, c := range codes[1:] {
		if c != codes[0] {
			return exitFailed
		}
	}
	return codes[0]
}

var errNoToken = errors.New("no token: set IMAGESTORE_TOKEN (or --token)")

// flagSet is a command's flags, and its help.
type flagSet struct {
	*flag.FlagSet
	help func(io.Writer)
	ids  bool // the command takes image ids, which may start with "-"
}

// printHelp prints the command's help and flags on standard output.
func (fs *flagSet) printHelp(w io.Writer) {
	fs.help(w)
	fmt.Fprintln(w, "\nFlags:")
	fs.SetOutput(w)
	fs.PrintDefaults()
	fs.SetOutput(io.Discard)
}

// stringFlag is a string flag that remembers being set.
type stringFlag struct{ p **string }

func (f stringFlag) String() string { return "" }

func (f stringFlag) Set(v string) error {
	*f.p = &v
	return nil
}

// flagSet returns a flag set for the command name, with the configuration
// flags; help writes its usage text.
func (e *env) flagSet(name string, help func(w io.Writer)) *flagSet {
	fs := &flagSet{FlagSet: flag.NewFlagSet(name, flag.ContinueOnError), help: help}
	fs.SetOutput(io.Discard)
	fs.Usage = func() {} // the errors are reported by parse
	fs.Var(stringFlag{&e.serverFlag}, "server", "the server's `URL` (IMAGESTORE_URL; default "+defaultServer+")")
	// The flag's value is never shown: not as a default, not anywhere.
	fs.Var(stringFlag{&e.tokenFlag}, "token", "the user's `token` (IMAGESTORE_TOKEN, which is safer)")
	return fs
}

// parse parses a command's arguments, flags and positional arguments in
// any order ("--" ends the flags), and returns the positional ones. If ok
// is false, it has answered (help, or a usage error) with code.
func (e *env) parse(fs *flagSet, args []string) (pos []string, code int, ok bool) {
	for len(args) > 0 {
		a := args[0]
		switch {
		case a == "--":
			return append(pos, args[1:]...), 0, true
		case a == "-" || !strings.HasPrefix(a, "-") || fs.isDashID(a):
			pos, args = append(pos, a), args[1:]
			continue
		}
		// A flag, with the next argument if it is its value.
		n := 1
		name, _, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if f := fs.Lookup(name); f != nil && !hasValue && !isBoolFlag(f) {
			n = min(2, len(args))
		}
		if err := fs.Parse(args[:n]); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				fs.printHelp(e.stdout)
				return nil, exitOK, false
			}
			return nil, e.usageError(fs.Name(), err.Error()), false
		}
		args = args[n:]
	}
	return pos, 0, true
}

// dashID matches an image id that starts with "-", as ids may.
var dashID = regexp.MustCompile(`^-[A-Za-z0-9_-]{3}$`)

// isDashID reports whether a, which starts with "-", is an image id rather
// than a flag: for a command that takes ids, one that names no flag.
func (fs *flagSet) isDashID(a string) bool {
	return fs.ids && dashID.MatchString(a) && fs.Lookup(strings.TrimLeft(a, "-")) == nil
}

func isBoolFlag(f *flag.Flag) bool {
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

// configure settles the server and the token, from the flags or the
// environment.
func (e *env) configure() error {
	e.server = e.getenv("IMAGESTORE_URL")
	if e.serverFlag != nil {
		e.server = *e.serverFlag
	}
	if e.server == "" {
		e.server = defaultServer
	}
	u, err := url.Parse(e.server)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("the server must be an http:// or https:// URL, such as %s", defaultServer)
	}
	e.token = e.getenv("IMAGESTORE_TOKEN")
	if e.tokenFlag != nil {
		e.token = *e.tokenFlag
		if !e.warnedAboutTokenOnFlag {
			e.warnedAboutTokenOnFlag = true
			e.errorf("warning: a token given with --token can be seen by other users of this machine; prefer IMAGESTORE_TOKEN")
		}
	}
	e.token = strings.TrimSpace(e.token)
	return nil
}

// client returns a client of the server; with needToken, only if there is
// a token. If ok is false, it has reported why with code.
func (e *env) client(fs *flagSet, needToken bool) (c *client.Client, code int, ok bool) {
	if err := e.configure(); err != nil {
		return nil, e.usageError(fs.Name(), err.Error()), false
	}
	if needToken && e.token == "" {
		return nil, e.fail("", errNoToken), false
	}
	return client.New(e.server, e.token, client.WithUserAgent("imagestore-cli/1")), 0, true
}

// needArgs checks the number of positional arguments.
// begin does what most commands do first: parse the arguments, check
// that there are lo to hi positional ones (hi < 0: no most), described by
// what in the usage error, and make the client.
func (e *env) begin(fs *flagSet, args []string, lo, hi int, what string, needToken bool) (pos []string, c *client.Client, code int, ok bool) {
	if pos, code, ok = e.parse(fs, args); !ok {
		return nil, nil, code, false
	}
	if code, ok = e.needArgs(fs, pos, lo, hi, what); !ok {
		return nil, nil, code, false
	}
	if c, code, ok = e.client(fs, needToken); !ok {
		return nil, nil, code, false
	}
	return pos, c, 0, true
}

func (e *env) needArgs(fs *flagSet, pos []string, lo, hi int, what string) (code int, ok bool) {
	if len(pos) < lo || (hi >= 0 && len(pos) > hi) {
		return e.usageError(fs.Name(), fmt.Sprintf("%s: want %s", fs.Name(), what)), false
	}
	return 0, true
}
