#!/usr/bin/env bash
# Runs the benchmark (see bench/main.go): the server beside nginx and a
# bare durable-write loop. Installs nginx and wrk with apt-get first when
# they are missing and this runs as root. Arguments go to the benchmark:
#
#   ./scripts/bench.sh -quick              # a smoke run of a few minutes
#   ./scripts/bench.sh -only get-100k -conc 16,64 -duration 10s
#   ./scripts/bench.sh -json results.json > report.md
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v nginx >/dev/null 2>&1 || ! command -v wrk >/dev/null 2>&1; then
	if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
		echo "installing nginx and wrk..." >&2
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx wrk >/dev/null
	else
		echo "note: nginx or wrk is missing and cannot be installed here (needs apt-get and root); the benchmark says so if the chosen workloads need them" >&2
	fi
fi

# MinIO for the S3 workloads (s3-*), built once at a pinned version.
if [ -z "${IMAGESTORE_MINIO:-}" ]; then
	if minio=$(./scripts/minio.sh); then
		export IMAGESTORE_MINIO=$minio
	else
		echo "note: MinIO could not be built; the S3 workloads cannot run" >&2
	fi
fi

exec go run ./bench "$@"
