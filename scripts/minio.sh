#!/usr/bin/env bash
# Builds the MinIO server that the S3 tests and the benchmark run on
# loopback, once, and prints the path of the binary. MinIO is only a test
# server: it is built from the Go module proxy at a pinned version into a
# cache folder outside the repository, and nothing of it is linked into
# imagestore.
#
#   IMAGESTORE_CACHE   where built tools are kept (default ~/.cache/imagestore)
set -euo pipefail

# MinIO tags its releases by date, so the module proxy knows them by
# pseudo-version: this one is the release of 2026-02-12.
version=v0.0.0-20260212201848-7aac2a2c5b7c

cache=${IMAGESTORE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/imagestore}
bin=$cache/minio-$version/minio
if [ ! -x "$bin" ]; then
	echo "building MinIO $version (once; it takes a few minutes)..." >&2
	mkdir -p "$cache/minio-$version"
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' EXIT
	# Outside any module, so that the project's go.mod is not touched.
	(cd "$tmp" && GOBIN="$tmp/bin" GOFLAGS=-mod=mod go install "github.com/minio/minio@$version") >&2
	mv "$tmp/bin/minio" "$bin"
fi
echo "$bin"
