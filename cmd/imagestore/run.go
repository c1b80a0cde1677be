package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/imagestore/imagestore/domain"
	"github.com/imagestore/imagestore/httpapi"
	"github.com/imagestore/imagestore/internal/fastlane"
	"github.com/imagestore/imagestore/metrics"
)

// errUsage is returned after the flag package printed what was wrong.
var errUsage = errors.New("usage")

// config is every setting of the server.
type config struct {
	addr            string
	data            string
	store           string
	maxUpload       byteSize
	maxPixels       int64
	gzipLevel       int
	logFormat       string
	logLevel        slog.Level
	shutdownTimeout time.Duration
	bodyTimeout     time.Duration
	maxUploads      int
	retrieval       domain.RetrievalMode
	accountRate     httpapi.Rate
	failureRate     httpapi.Rate
	corsOrigins     []string
	minFree         byteSize
	debugAddr       string
	cacheSize       byteSize
	variantMaxSize  int
	stripMetadata   bool
	gzipAll         bool
	fastLane        bool
}

// parseConfig reads flags, falling back to IMAGESTORE_* environment
// variables, then to the defaults.
func parseConfig(args []string, getenv func(string) string, stderr io.Writer) (config, error) {
	c := config{maxUpload: httpapi.DefaultMaxUploadBytes}
	fs := flag.NewFlagSet("imagestore", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: imagestore [serve] [flags]\n       imagestore check [flags]    (verify a store: imagestore check -h)\n       imagestore migrate [flags]  (copy one store into another: imagestore migrate -h)\n\nServes the image API. Every flag can also be set by the environment variable shown.\n\n")
		fs.PrintDefaults()
	}
	env := func(name, def string) string {
		if v := getenv(name); v != "" {
			return v
		}
		return def
	}
	var errs []error
	envErrs := map[string]error{} // by flag: a flag given overrides a bad variable
	envInt := func(flagName, name string, def int64) int64 {
		v := getenv(name)
		if v == "" {
			return def
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			envErrs[flagName] = fmt.Errorf("%s: %q is not a whole number", name, v)
		}
		return n
	}
	envBool := func(flagName, name string, def bool) bool {
		v := getenv(name)
		if v == "" {
			return def
		}
		b, err := strconv.ParseBool(v)
		if err != nil {
			envErrs[flagName] = fmt.Errorf("%s: %q is neither true nor false", name, v)
		}
		return b
	}
	fs.StringVar(&c.addr, "addr", env("IMAGESTORE_ADDR", "127.0.0.1:8000"), "`address` to listen on (IMAGESTORE_ADDR)")
	fs.StringVar(&c.data, "data", env("IMAGESTORE_DATA", "./data"), "`folder` holding the stored images (IMAGESTORE_DATA)")
	fs.StringVar(&c.store, "store", env("IMAGESTORE_STORE", ""), "where images are kept, if not in --data: s3://bucket/prefix?endpoint=URL&region=R&path-style=true for an S3-compatible bucket several servers may share, credentials from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (IMAGESTORE_STORE)")
	if v := getenv("IMAGESTORE_MAX_UPLOAD"); v != "" {
		if err := c.maxUpload.Set(v); err != nil {
			envErrs["max-upload"] = fmt.Errorf("IMAGESTORE_MAX_UPLOAD: %v", err)
		}
	}
	fs.Var(&c.maxUpload, "max-upload", "largest accepted upload `size`, such as 32MiB or 1000000 (IMAGESTORE_MAX_UPLOAD)")
	fs.Int64Var(&c.maxPixels, "max-pixels", envInt("max-pixels", "IMAGESTORE_MAX_PIXELS", domain.DefaultConfig.MaxPixels), "most `pixels` (width x height) an image may have; 0 for no limit (IMAGESTORE_MAX_PIXELS)")
	fs.IntVar(&c.gzipLevel, "gzip-level", int(envInt("gzip-level", "IMAGESTORE_GZIP_LEVEL", int64(domain.DefaultConfig.GzipLevel))), "gzip `level` of stored images, 1 (fastest) to 9 (smallest) (IMAGESTORE_GZIP_LEVEL)")
	fs.StringVar(&c.logFormat, "log-format", env("IMAGESTORE_LOG_FORMAT", "text"), "log `format`: text or json (IMAGESTORE_LOG_FORMAT)")
	level := env("IMAGESTORE_LOG_LEVEL", "info")
	fs.Func("log-level", "log `level`: debug, info, warn or error (IMAGESTORE_LOG_LEVEL; default info)", func(s string) error { level = s; return nil })
	shutdown := env("IMAGESTORE_SHUTDOWN_TIMEOUT", "30s")
	fs.Func("shutdown-timeout", "how long requests in flight may take to finish at shutdown, as a `duration` (IMAGESTORE_SHUTDOWN_TIMEOUT; default 30s)", func(s string) error { shutdown = s; return nil })
	bodyTimeout := env("IMAGESTORE_BODY_TIMEOUT", "60s")
	fs.Func("body-timeout", "how long a client may send no part of a request body, or take no part of a response, as a `duration`; 0 for no limit (IMAGESTORE_BODY_TIMEOUT; default 60s)", func(s string) error { bodyTimeout = s; return nil })
	fs.IntVar(&c.maxUploads, "max-uploads", int(envInt("max-uploads", "IMAGESTORE_MAX_UPLOADS", httpapi.DefaultMaxUploads)), "most uploads in progress at once; more wait their turn (IMAGESTORE_MAX_UPLOADS)")
	retrieval := env("IMAGESTORE_TOKEN_RETRIEVAL", "open")
	fs.Func("token-retrieval", "who may retrieve a token by username: `mode` open (anyone, unless the user set a password), password (only with the password) or off (IMAGESTORE_TOKEN_RETRIEVAL; default open)", func(s string) error { retrieval = s; return nil })
	accountRate := env("IMAGESTORE_ACCOUNT_RATE", "30/min")
	fs.Func("account-rate", "per client address, the `rate` of token generation, retrieval and user creation, such as 30/min; 0 for no limit (IMAGESTORE_ACCOUNT_RATE; default 30/min)", func(s string) error { accountRate = s; return nil })
	failureRate := env("IMAGESTORE_AUTH_FAILURE_RATE", "20/min")
	fs.Func("auth-failure-rate", "per client address, the `rate` of failed authentications tolerated before the client must wait; 0 for no limit (IMAGESTORE_AUTH_FAILURE_RATE; default 20/min)", func(s string) error { failureRate = s; return nil })
	cors := env("IMAGESTORE_CORS_ORIGINS", "")
	fs.Func("cors-origins", "comma-separated `origins` whose pages may call the API, or *; none by default (IMAGESTORE_CORS_ORIGINS)", func(s string) error { cors = s; return nil })
	c.minFree = 256 << 20
	if v := getenv("IMAGESTORE_MIN_FREE"); v != "" {
		if err := c.minFree.Set(v); err != nil {
			envErrs["min-free"] = fmt.Errorf("IMAGESTORE_MIN_FREE: %v", err)
		}
	}
	fs.Var(&c.minFree, "min-free", "free disk `size` kept in reserve: below it uploads and replacements get 507 and /readyz reports not ready, while reads and deletions go on (IMAGESTORE_MIN_FREE)")
	c.cacheSize = 64 << 20
	if v := getenv("IMAGESTORE_CACHE_SIZE"); v != "" {
		if err := c.cacheSize.Set(v); err != nil {
			envErrs["cache-size"] = fmt.Errorf("IMAGESTORE_CACHE_SIZE: %v", err)
		}
	}
	fs.Var(&c.cacheSize, "cache-size", "memory `size` kept for recently read images, decompressed and as stored, served again without decompressing or reading them; 0 turns it off (IMAGESTORE_CACHE_SIZE)")
	fs.IntVar(&c.variantMaxSize, "variant-max-size", int(envInt("variant-max-size", "IMAGESTORE_VARIANT_MAX_SIZE", domain.DefaultMaxVariantSize)), "largest width or height, in `pixels`, of an image variant (GET /api/v1/images/{id}?w=&h=) (IMAGESTORE_VARIANT_MAX_SIZE)")
	fs.BoolVar(&c.fastLane, "fast-lane", envBool("fast-lane", "IMAGESTORE_FAST_LANE", true), "answer downloads of cached images (get-image, GET /api/v1/images/{id}) on the connection directly, in one write, and hand the connection to Go's HTTP server at its first other request; false serves every request through it (IMAGESTORE_FAST_LANE)")
	fs.BoolVar(&c.gzipAll, "gzip-all", envBool("gzip-all", "IMAGESTORE_GZIP_ALL", false), "deflate JPEG, PNG and WebP images too, whose data is compressed already; by default they go into gzip's stored blocks, which saves most of an upload's CPU and costs under 1% of space (IMAGESTORE_GZIP_ALL)")
	fs.BoolVar(&c.stripMetadata, "strip-metadata", envBool("strip-metadata", "IMAGESTORE_STRIP_METADATA", false), "remove Exif (GPS position included), XMP, IPTC and comments from JPEG uploads and replacements, keeping the pixels and the colour profile (IMAGESTORE_STRIP_METADATA)")
	fs.StringVar(&c.debugAddr, "debug-addr", env("IMAGESTORE_DEBUG_ADDR", ""), "`address` of a second listener serving Go's profiler (/debug/pprof/); off by default, keep it on loopback (IMAGESTORE_DEBUG_ADDR)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return c, flag.ErrHelp
		}
		return c, errUsage // the flag package has said what was wrong
	}
	fs.Visit(func(f *flag.Flag) { delete(envErrs, f.Name) })
	for _, err := range envErrs {
		errs = append(errs, err)
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q (see imagestore -h)", fs.Arg(0))
	}
	if err := c.logLevel.UnmarshalText([]byte(level)); err != nil {
		errs = append(errs, fmt.Errorf("log level: %v", err))
	}
	d, err := time.ParseDuration(shutdown)
	if err != nil || d < 0 {
		errs = append(errs, fmt.Errorf("shutdown timeout: %q is not a duration", shutdown))
	}
	c.shutdownTimeout = d
	if c.bodyTimeout, err = time.ParseDuration(bodyTimeout); err != nil || c.bodyTimeout < 0 {
		errs = append(errs, fmt.Errorf("body timeout: %q is not a duration", bodyTimeout))
	}
	if c.retrieval, err = domain.ParseRetrievalMode(retrieval); err != nil {
		errs = append(errs, err)
	}
	if c.accountRate, err = httpapi.ParseRate(accountRate); err != nil {
		errs = append(errs, fmt.Errorf("account rate: %v", err))
	}
	if c.failureRate, err = httpapi.ParseRate(failureRate); err != nil {
		errs = append(errs, fmt.Errorf("auth failure rate: %v", err))
	}
	for o := range strings.SplitSeq(cors, ",") {
		if o = strings.TrimSpace(o); o != "" {
			c.corsOrigins = append(c.corsOrigins, o)
		}
	}
	if c.maxUploads < 1 {
		errs = append(errs, fmt.Errorf("max uploads %d is less than 1", c.maxUploads))
	}
	if c.logFormat != "text" && c.logFormat != "json" {
		errs = append(errs, fmt.Errorf("log format %q is neither text nor json", c.logFormat))
	}
	if c.maxUpload <= 0 {
		errs = append(errs, errors.New("the upload limit must be positive"))
	}
	if c.gzipLevel < 1 || c.gzipLevel > 9 {
		errs = append(errs, fmt.Errorf("gzip level %d is not between 1 and 9", c.gzipLevel))
	}
	if c.maxPixels < 0 {
		errs = append(errs, fmt.Errorf("pixel limit %d is negative (0 means no limit)", c.maxPixels))
	}
	if c.variantMaxSize < 1 || c.variantMaxSize > maxVariantMaxSize {
		errs = append(errs, fmt.Errorf("variant max size %d is not between 1 and %d pixels", c.variantMaxSize, maxVariantMaxSize))
	}
	return c, errors.Join(errs...)
}

// maxVariantMaxSize bounds --variant-max-size: a variant of that many
// pixels a side (256 MiB while it is made) is as large as makes sense.
const maxVariantMaxSize = 1 << 13

// byteSize is a flag value of bytes with an optional unit.
type byteSize int64

func (b *byteSize) String() string {
	n := int64(*b)
	for _, u := range []struct {
		suffix string
		n      int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n != 0 && n%u.n == 0 {
			return strconv.FormatInt(n/u.n, 10) + u.suffix
		}
	}
	return strconv.FormatInt(n, 10)
}

func (b *byteSize) Set(s string) error {
	units := []struct {
		suffix string
		n      int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"B", 1}}
	mult := int64(1)
	for _, u := range units {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.n
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return fmt.Errorf("%q is not a size such as 32MiB", s)
	}
	*b = byteSize(n * mult)
	return nil
}

// run is the whole program; main only wires it to the process.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "check" {
		return runCheck(ctx, args[1:], getenv, stdout, stderr)
	}
	if len(args) > 0 && args[0] == "migrate" {
		return runMigrate(ctx, args[1:], getenv, stdout, stderr)
	}
	if len(args) > 0 && args[0] == "serve" {
		args = args[1:]
	}
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		return fmt.Errorf("unknown subcommand %q (see imagestore -h)", args[0])
	}
	cfg, err := parseConfig(args, getenv, stderr)
	if err != nil {
		return err
	}
	return serve(ctx, cfg, getenv, stderr)
}

func newLogger(cfg config, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.logLevel}
	if cfg.logFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func serve(ctx context.Context, cfg config, getenv func(string) string, stderr io.Writer) error {
	started := time.Now()
	log := newLogger(cfg, stderr)
	spec := cfg.store
	if spec == "" {
		spec = cfg.data
	}
	store, err := openStore(ctx, spec, getenv)
	if err != nil {
		return err
	}
	defer store.close()
	m := metrics.New()
	svc, err := domain.New(m.Store(store.Store), domain.Config{
		MaxPixels: cfg.maxPixels, GzipLevel: cfg.gzipLevel, Logger: log, Retrieval: cfg.retrieval,
		MinFreeBytes:   int64(cfg.minFree),
		SoleWriter:     store.sole, // a data folder is locked to this process; a bucket may be shared
		HotCacheBytes:  int64(cfg.cacheSize),
		MaxVariantSize: cfg.variantMaxSize,
		StripMetadata:  cfg.stripMetadata,
		GzipAll:        cfg.gzipAll,
		CPUs:           goProcs, // the CPUs, not the server's extra Ps: see setProcs
	})
	if err != nil {
		return err
	}
	m.Counts(svc.Counts)
	m.HotCache(func() (hits, misses, bytes, entries, capacity int64) {
		st := svc.HotCacheStats()
		return st.Hits, st.Misses, st.Bytes, st.Entries, st.Capacity
	})
	m.Variants(func() (hits, misses, failures int64, seconds float64) {
		st := svc.VariantStats()
		return st.Hits, st.Misses, st.Failures, st.GenerationSeconds
	})
	api := httpapi.NewServer(svc, httpapi.Options{
		MaxUploadBytes: int64(cfg.maxUpload),
		Logger:         log,
		BodyTimeout:    cfg.bodyTimeout,
		MaxUploads:     cfg.maxUploads,
		AccountRate:    cfg.accountRate,
		FailureRate:    cfg.failureRate,
		CORSOrigins:    cfg.corsOrigins,
		Metrics:        m,
		MinFreeBytes:   int64(cfg.minFree),
	})
	if cfg.retrieval == domain.RetrievalOpen {
		log.Warn("token retrieval is open: anyone who knows a username without a password can get its token " +
			"(the original's behaviour); set --token-retrieval password or off to close it")
	}

	var ln net.Listener
	ln, err = net.Listen("tcp", cfg.addr)
	if err != nil {
		return err
	}
	const headerTimeout, idleTimeout = 10 * time.Second, 2 * time.Minute
	errorLog := slog.NewLogLogger(log.Handler(), slog.LevelWarn)
	var lane *fastlane.Lane
	switch {
	case cfg.fastLane && store.sole:
		// The lane answers the simplest downloads itself and hands each
		// connection to srv at its first other request. Half the header
		// timeout: srv's starts afresh on a connection handed over.
		lane = fastlane.New(ln, api.FastLane(), fastlane.Options{HeaderTimeout: headerTimeout / 2,
			IdleTimeout: idleTimeout, WriteTimeout: cfg.bodyTimeout, ErrorLog: errorLog})
		ln = lane
		m.FastLane(lane.Stats)
	case cfg.fastLane:
		// On a shared bucket, knowing that a token and an image are
		// still valid takes requests to the bucket, which are
		// net/http's to make, with its deadlines and cancellation.
		log.Info("the fast lane is off: the store is shared")
	}
	// No ReadTimeout or WriteTimeout: they would bound a whole upload or
	// download, and cut a large one on a slow link. The handler's progress
	// deadlines (--body-timeout) stop the clients that send or take nothing.
	srv := &http.Server{
		Handler:           api,
		ReadHeaderTimeout: headerTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          errorLog,
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
		ConnContext:       httpapi.ConnContext,
	}
	procs := setProcs(getenv, func() bool { return cpuLimited(os.DirFS("/")) })
	log.Info("listening", "addr", ln.Addr().String(), "store", store.desc,
		"max_upload", int64(cfg.maxUpload), "max_pixels", cfg.maxPixels, "gzip_level", cfg.gzipLevel,
		"gomaxprocs", procs)

	// Bytes that a crash left without an index entry: this process holds
	// a data folder, so every upload in progress began after started. In a
	// shared bucket, another server's upload may have begun before.
	sweepBefore := started
	if !store.sole {
		sweepBefore = started.Add(-orphanGrace)
	}
	go func() {
		if err := svc.Recount(ctx, started); err != nil && ctx.Err() == nil {
			log.Warn("counting users and images failed", "err", err)
		}
		go func() { // expired idempotency records, now and every hour
			tick := time.NewTicker(time.Hour)
			defer tick.Stop()
			for {
				if n, err := svc.SweepIdempotency(ctx); err == nil && n > 0 {
					log.Info("removed expired idempotency records", "count", n)
				}
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
			}
		}()
		n, err := svc.SweepOrphans(ctx, sweepBefore)
		switch {
		case err != nil && ctx.Err() == nil:
			log.Warn("sweeping unreferenced blobs failed", "err", err)
		case n > 0:
			log.Info("removed unreferenced blobs left by an earlier crash", "count", n)
		}
	}()

	if cfg.debugAddr != "" {
		dln, err := net.Listen("tcp", cfg.debugAddr)
		if err != nil {
			return fmt.Errorf("debug listener: %w", err)
		}
		defer dln.Close()
		log.Info("serving the profiler", "addr", dln.Addr().String())
		go (&http.Server{Handler: debugHandler(), ReadHeaderTimeout: 10 * time.Second}).Serve(dln)
	}

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down: finishing requests in flight", "timeout", cfg.shutdownTimeout)
	sctx, cancel := context.WithTimeout(context.Background(), cfg.shutdownTimeout)
	defer cancel()
	laneDone := make(chan error, 1)
	go func() {
		var err error
		if lane != nil {
			err = lane.Shutdown(sctx)
		}
		laneDone <- err
	}()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-laneDone; err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	log.Info("stopped")
	return nil
}
