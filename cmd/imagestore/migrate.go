package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/imagestore/imagestore/domain"
	"github.com/imagestore/imagestore/storage/s3store"
)

// errIncomplete makes the process exit non-zero after a migration that
// left keys uncopied.
var errIncomplete = errors.New("the migration is incomplete: see the failures listed")

// runMigrate is "imagestore migrate": it copies everything from one store
// to another, checking every image against its SHA-256. Running it again
// resumes an interrupted migration and skips what is already there.
func runMigrate(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("imagestore migrate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: imagestore migrate --from STORE --to STORE [--workers N] [--overwrite]\n\n"+
			"Copies every user, token, image list and image from one store to another.\n"+
			"A STORE is a data folder (a path, or file://path) or an S3-compatible bucket\n"+
			"(s3://bucket/prefix?endpoint=URL, credentials from AWS_ACCESS_KEY_ID and\n"+
			"AWS_SECRET_ACCESS_KEY). Each image is checked against its recorded SHA-256 as\n"+
			"it is copied, and read back from the destination. Nothing in the destination\n"+
			"is deleted; what it already holds is skipped, so running the same command\n"+
			"again resumes an interrupted migration. A user, token or image list that\n"+
			"the two stores hold in different versions (changed in either since) is left\n"+
			"alone and listed; --overwrite makes the source's version win. No server\n"+
			"may be running on either store while it runs: stop them first (a data folder\n"+
			"is locked while a server uses it; a bucket is not, so that is up to you).\n"+
			"Exits 1 if any key could not be copied.\n\n")
		fs.PrintDefaults()
	}
	from := fs.String("from", "", "the `store` to copy from")
	to := fs.String("to", "", "the `store` to copy to")
	workers := fs.Int("workers", domain.DefaultMigrateWorkers, "how many keys to copy at once")
	overwrite := fs.Bool("overwrite", false, "replace users, tokens and image lists that the destination holds in another version with the source's; without it they are left alone and listed")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	switch {
	case fs.NArg() > 0:
		return fmt.Errorf("unexpected argument %q (see imagestore migrate -h)", fs.Arg(0))
	case *from == "" || *to == "":
		return errors.New("both --from and --to are required (see imagestore migrate -h)")
	case *workers < 1:
		return fmt.Errorf("--workers %d: want at least 1", *workers)
	}
	same, err := overlap(*from, *to, getenv)
	if err != nil {
		return err
	}
	if same {
		return errors.New("--from and --to name the same store, or one inside the other: a store cannot be migrated into itself")
	}
	if !strings.HasPrefix(*from, "s3://") {
		// Opening a folder creates it: a mistyped source would migrate
		// nothing, and say so only in its summary.
		dir := strings.TrimPrefix(*from, "file://")
		if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
			return fmt.Errorf("the source %s is not a data folder", dir)
		}
	}
	src, err := openStore(ctx, *from, getenv)
	if err != nil {
		return fmt.Errorf("open the source: %w", err)
	}
	defer src.close()
	dst, err := openStore(ctx, *to, getenv)
	if err != nil {
		return fmt.Errorf("open the destination: %w", err)
	}
	defer dst.close()

	fmt.Fprintf(stderr, "migrating %s to %s\n", src.desc, dst.desc)
	bar := newProgressBar(stderr)
	rep, err := domain.Migrate(ctx, src.Store, dst.Store, domain.MigrateOptions{Workers: *workers, Progress: bar.update, Overwrite: *overwrite})
	bar.finish()
	printMigrateReport(stdout, rep)
	switch {
	case err != nil:
		return fmt.Errorf("%w; run the same command again to resume", err)
	case len(rep.Failures) > 0:
		return errIncomplete
	}
	return nil
}

func printMigrateReport(w io.Writer, rep domain.MigrateReport) {
	fmt.Fprintf(w, "users:               %d\n", rep.Users)
	fmt.Fprintf(w, "images:              %d, %d verified in the destination\n", rep.Images, rep.Verified)
	fmt.Fprintf(w, "copied:              %d keys, %s\n", rep.Copied, formatBytes(rep.Bytes))
	fmt.Fprintf(w, "already there:       %d keys\n", rep.Skipped)
	fmt.Fprintf(w, "unreferenced blobs:  %d, not copied\n", rep.Unreferenced)
	fmt.Fprintf(w, "failures:            %d\n", len(rep.Failures))
	for _, f := range rep.Failures {
		fmt.Fprintf(w, "  %s\n", f)
	}
	if n := rep.SourceDamage(); n > 0 {
		fmt.Fprintf(w, "%d failures are faults in the source, which running again cannot mend; the\n"+
			"destination lists images whose bytes are damaged or missing in the source\n"+
			"without them (imagestore check --repair on it unlists them).\n", n)
	}
	if n := len(rep.Failures) - rep.SourceDamage(); n > 0 {
		fmt.Fprintf(w, "%d keys failed to copy: run the same command again to retry them.\n", n)
	}
}

// overlap reports whether two store addresses name the same store, or one
// inside the other (whose keys the other's listing would include).
func overlap(a, b string, getenv func(string) string) (bool, error) {
	aS3, bS3 := strings.HasPrefix(a, "s3://"), strings.HasPrefix(b, "s3://")
	if aS3 != bS3 {
		return false, nil
	}
	if aS3 {
		ca, err := s3store.ParseURL(a, getenv)
		if err != nil {
			return false, fmt.Errorf("--from: %w", err)
		}
		cb, err := s3store.ParseURL(b, getenv)
		if err != nil {
			return false, fmt.Errorf("--to: %w", err)
		}
		return ca.Endpoint == cb.Endpoint && ca.Bucket == cb.Bucket &&
			(strings.HasPrefix(ca.Prefix, cb.Prefix) || strings.HasPrefix(cb.Prefix, ca.Prefix)), nil
	}
	da, err := resolveDir(strings.TrimPrefix(a, "file://"))
	if err != nil {
		return false, err
	}
	db, err := resolveDir(strings.TrimPrefix(b, "file://"))
	if err != nil {
		return false, err
	}
	return within(da, db) || within(db, da), nil
}

// resolveDir returns the absolute form of a folder, following symbolic
// links if it exists.
func resolveDir(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	if real, err := filepath.EvalSymlinks(abs); err == nil {
		return real, nil
	}
	return abs, nil
}

// within reports whether the folder child is parent or inside it.
func within(parent, child string) bool {
	rel, err := filepath.Rel(parent, child)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}

// progressBar shows a migration's progress: on a terminal, a bar redrawn
// in place at most ten times a second; elsewhere (a log file), a line at
// every tenth of the way. Migrate serialises its calls, so it needs no lock.
type progressBar struct {
	w       io.Writer
	tty     bool
	now     func() time.Time
	started time.Time
	drawn   time.Time // when the bar was last drawn; zero before the first
	width   int       // of the last line drawn, to blank what a shorter one leaves
	tenth   int       // the last tenth of the way reported, off a terminal
}

func newProgressBar(w io.Writer) *progressBar {
	return &progressBar{w: w, tty: isTerminal(w), now: time.Now, started: time.Now(), tenth: -1}
}

// isTerminal reports whether w is a terminal (a character device).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

func (p *progressBar) update(done, total int, bytes int64) {
	if total <= 0 {
		return
	}
	now := p.now()
	if !p.tty {
		if tenth := done * 10 / total; tenth > p.tenth {
			p.tenth = tenth
			fmt.Fprintf(p.w, "%s\n", progressText(done, total, bytes, now.Sub(p.started)))
		}
		return
	}
	if done < total && !p.drawn.IsZero() && now.Sub(p.drawn) < 100*time.Millisecond {
		return
	}
	p.drawn = now
	const barWidth = 30
	filled := done * barWidth / total
	line := "[" + strings.Repeat("#", filled) + strings.Repeat(".", barWidth-filled) + "] " +
		progressText(done, total, bytes, now.Sub(p.started))
	pad := max(p.width-len(line), 0)
	p.width = len(line)
	fmt.Fprintf(p.w, "\r%s%s", line, strings.Repeat(" ", pad))
}

// finish ends the bar's line, if one was drawn.
func (p *progressBar) finish() {
	if p.tty && !p.drawn.IsZero() {
		fmt.Fprintln(p.w)
	}
}

func progressText(done, total int, bytes int64, elapsed time.Duration) string {
	return fmt.Sprintf("%3d%%  %d/%d keys  %s written  %s",
		done*100/total, done, total, formatBytes(bytes), elapsed.Round(time.Second))
}

// formatBytes writes n in the largest binary unit that keeps it at least 1.
func formatBytes(n int64) string {
	const units = "KMGTPE"
	if n < 1024 {
		return fmt.Sprintf("%d B", n)
	}
	v, i := float64(n)/1024, 0
	for v >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	return fmt.Sprintf("%.1f %ciB", v, units[i])
}
