#!/usr/bin/env bash
# Runs every check of the project: formatting, go vet, all tests with the
# race detector (the end-to-end tests build and start the real server), and
# a short run of each fuzz target. Installs what the tests need first.
#
#   IMAGESTORE_FUZZTIME   how long each fuzz target runs (default 10s; 0 skips)
#
# Under CI (CI=true) nothing may be skipped: a missing httpie, MinIO,
# Chromium or C compiler (for the race detector) fails the run instead.
set -euo pipefail
cd "$(dirname "$0")/.."

missing() {
	if [ "${CI:-}" = true ]; then
		echo "error: $1" >&2
		exit 1
	fi
	echo "note: $1"
}

# httpie runs the seed's own commands in the end-to-end tests.
if ! command -v http >/dev/null 2>&1; then
	if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
		echo "installing httpie for the seed's commands..."
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq httpie) >/dev/null 2>&1 || true
	fi
	command -v http >/dev/null 2>&1 || missing "httpie is not installed and cannot be installed here; TestSeedHttpieCommands will skip"
fi

# MinIO, built once from the module proxy at a pinned version, is the real
# S3-compatible server that the S3 store's tests and the tests of several
# servers sharing a bucket start on loopback (and stop after).
if minio=$(./scripts/minio.sh); then
	export IMAGESTORE_MINIO=$minio
else
	missing "MinIO could not be built; the S3 tests will skip"
fi

# Debian's Chromium and the pinned playwright-core drive the web gallery's
# browser tests (e2e/browser).
./scripts/browser.sh || missing "Chromium or playwright-core cannot be installed here; the browser tests (e2e/browser) will skip"

echo "== gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './.git/*'))
if [ -n "$unformatted" ]; then
	echo "gofmt would change: $unformatted"
	exit 1
fi

echo "== go vet"
go vet ./...

echo "== go test"
race=-race
if ! command -v gcc >/dev/null 2>&1; then
	missing "no C compiler, so no race detector"
	race=
fi
go test $race -count=1 ./...

fuzztime=${IMAGESTORE_FUZZTIME:-10s}
if [ "$fuzztime" != 0 ]; then
	# Every fuzz target of the repository, found in the test files: Go
	# fuzzes one target per invocation. (The seed corpora already ran
	# with the tests above.)
	targets=$(grep -rEo --include='*_test.go' '^func Fuzz[A-Za-z0-9_]*\(' . |
		sed -E 's#^(.*)/[^/]*:func (Fuzz[A-Za-z0-9_]*)\($#\1 \2#' | sort -u)
	if [ -z "$targets" ]; then
		echo "error: no fuzz targets found" >&2
		exit 1
	fi
	echo "== fuzz ($fuzztime each: $(echo "$targets" | wc -l) targets)"
	while read -r pkg name; do
		echo "-- $name ($pkg)"
		# Go's fuzzing coordinator can report "context deadline exceeded"
		# when fuzztime runs out on a loaded machine, with no failing
		# input: that is the toolchain's, not a finding, and such a run
		# is tried once more. A failing input always fails the run.
		if ! out=$(go test -run '^$' -fuzz "^${name}\$" -fuzztime "$fuzztime" -fuzzminimizetime 5s "$pkg" </dev/null 2>&1); then
			echo "$out"
			if grep -q "context deadline exceeded" <<<"$out" && ! grep -q "Failing input written" <<<"$out"; then
				echo "-- $name: the fuzzing engine timed out without a finding; running it again"
				go test -run '^$' -fuzz "^${name}\$" -fuzztime "$fuzztime" -fuzzminimizetime 5s "$pkg" </dev/null
			else
				exit 1
			fi
		else
			echo "$out" | tail -n 3
		fi
	done <<<"$targets"
fi
