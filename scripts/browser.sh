#!/usr/bin/env bash
# Installs what the web gallery's browser tests (e2e/browser) need, then
# exits; run `go test ./e2e/browser/` after it.
#
#   - Debian's Chromium at /usr/bin/chromium (apt-get, when it is missing
#     and this runs as root on a machine with apt-get);
#   - playwright-core from npm, at the exact version pinned in
#     e2e/browser/package.json and locked by its package-lock.json
#     (`npm ci`), into e2e/browser/node_modules (git-ignored).
#
# Nothing downloads a browser of Playwright's own: the tests drive
# /usr/bin/chromium. Exits 1, saying what is missing, if something cannot
# be installed here (the tests then skip, or fail under CI=true).
set -euo pipefail
cd "$(dirname "$0")/.."

fail() {
	echo "error: $1" >&2
	exit 1
}

if [ ! -x /usr/bin/chromium ]; then
	if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
		echo "installing Debian's chromium with apt-get..."
		apt-get update -qq
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
	fi
	[ -x /usr/bin/chromium ] || fail "/usr/bin/chromium is missing; install Debian's chromium package (apt-get install chromium, as root)"
fi

command -v node >/dev/null 2>&1 || fail "node is not installed (Node.js 20 or later is needed)"
command -v npm >/dev/null 2>&1 || fail "npm is not installed"
node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)' ||
	fail "node $(node --version) is too old: playwright-core needs Node.js 20 or later"

cd e2e/browser
# playwright-core downloads nothing when installed; this makes sure that no
# install script of any package fetches a browser either.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
if [ -f package-lock.json ]; then
	# Exactly what the lock file says (a few seconds from npm's cache).
	npm ci --no-audit --no-fund --loglevel=error
else
	# The first time only: creates package-lock.json, to be committed.
	npm install --no-audit --no-fund --loglevel=error
fi
echo "browser tests ready: $(/usr/bin/chromium --version 2>/dev/null), playwright-core $(node -p 'require("./node_modules/playwright-core/package.json").version')"
