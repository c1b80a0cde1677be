package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/imagestore/imagestore/domain"
)

// errDamage makes the process exit non-zero after a check found problems.
var errDamage = errors.New("the check found problems")

// runCheck is "imagestore check": it verifies every stored image against
// its SHA-256 and the store's consistency, and with --repair removes what
// can safely go. The server must be stopped: the data folder's lock is taken.
func runCheck(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("imagestore check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: imagestore check [--data folder | --store s3://bucket/prefix] [--repair]\n\n"+
			"Verifies every image against its recorded SHA-256, and finds images listed\n"+
			"without bytes, bytes no image names, and stale token records. Exits 1 if\n"+
			"problems remain. No server may be running on the store: uploads in\n"+
			"progress would show as bytes no image names.\n\n")
		fs.PrintDefaults()
	}
	data := getenv("IMAGESTORE_DATA")
	if data == "" {
		data = "./data"
	}
	fs.StringVar(&data, "data", data, "the data `folder` (IMAGESTORE_DATA)")
	store := fs.String("store", getenv("IMAGESTORE_STORE"), "the store, if not --data: s3://bucket/prefix?endpoint=URL (IMAGESTORE_STORE)")
	repair := fs.Bool("repair", false, "remove bytes no image names and stale token records, and unlist images whose bytes are gone")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	spec := *store
	if spec == "" {
		spec = data
	}
	st, err := openStore(ctx, spec, getenv)
	if err != nil {
		return err
	}
	defer st.close()
	cfg := domain.DefaultConfig
	cfg.SoleWriter = st.sole   // a data folder's lists stay logs (see ARCHITECTURE.md)
	cfg.KeepUnpublished = true // reported, and removed on repair, as images without their bytes
	svc, err := domain.New(st.Store, cfg)
	if err != nil {
		return err
	}
	rep, err := svc.Check(ctx, *repair, func(n int) {
		if n%1000 == 0 {
			fmt.Fprintf(stderr, "checked %d images...\n", n)
		}
	})
	if err != nil {
		return err
	}
	section := func(title string, items []string) {
		if len(items) == 0 {
			return
		}
		fmt.Fprintf(stdout, "%s (%d):\n", title, len(items))
		for _, it := range items {
			fmt.Fprintf(stdout, "  %s\n", it)
		}
	}
	section("damaged images", rep.Damaged)
	section("images listed without their bytes", rep.Missing)
	section("stored bytes no image names", rep.Orphans)
	section("stale token records", rep.StaleTokens)
	problems := "problems"
	if rep.Problems() == 1 {
		problems = "problem"
	}
	fmt.Fprintf(stdout, "checked %d users and %d images: %d %s, %d repaired\n",
		rep.Users, rep.Images, rep.Problems(), problems, rep.Repaired)
	if rep.Problems() > rep.Repaired {
		return errDamage
	}
	return nil
}
