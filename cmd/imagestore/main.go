// Command imagestore is a self-hosted image storage server: a drop-in
// replacement for the original image API, storing images gzip-compressed in
// a data folder or an S3-compatible bucket, with no database.
//
// Run with no subcommand (or "serve"), it serves on 127.0.0.1:8000 from
// ./data. "imagestore -h" lists the settings; each flag can also be set by
// an IMAGESTORE_* environment variable. "imagestore check" verifies a
// stopped server's store, and repairs it with --repair; "imagestore
// migrate" copies everything from one store to another.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// After the first signal, a second one ends the process at once.
	go func() { <-ctx.Done(); stop() }()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		if err != errUsage && err != errDamage {
			fmt.Fprintln(os.Stderr, "imagestore:", err)
		}
		os.Exit(1)
	}
}
