#!/usr/bin/env bash
# Installs the official AT Protocol reference PDS (@atproto/dev-env, pinned in
# package-lock.json) into tests/peers/bluesky/node_modules for the Bluesky tests.
# Idempotent: does nothing when node_modules already matches the lockfile and Node version.
# Needs Node 20 + npm, and gcc/make because better-sqlite3 builds from source.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    echo "install.sh: Node 20 and npm are required (https://nodejs.org/)" >&2
    exit 1
fi
node_major="$(node -p 'process.versions.node.split(".")[0]')"
if [ "$node_major" != "20" ]; then
    echo "install.sh: warning: @atproto/dev-env 0.3.215 is tested on Node 20, found $(node --version)" >&2
fi

stamp_file="node_modules/.hashroom-install-stamp"
# The stamp ties node_modules to the exact lockfile and Node ABI it was built for.
want_stamp="$(cat package-lock.json package.json | sha256sum | cut -d' ' -f1) node-$(node -p process.versions.modules)"
if [ -f "$stamp_file" ] && [ "$(cat "$stamp_file")" = "$want_stamp" ]; then
    echo "install.sh: reference PDS already installed ($here/node_modules)"
    exit 0
fi

# better-sqlite3 compiles against the system Node headers (no prebuilt binary download);
# package.json "allowScripts" lets npm 11+ run its build script (older npm runs it anyway).
export npm_config_nodedir="${npm_config_nodedir:-/usr}"
echo "install.sh: installing @atproto/dev-env (about 2 minutes)…"
npm ci --no-audit --no-fund

# Some npm versions skip dependency install scripts: make sure the native module exists.
if ! node -e "new (require('better-sqlite3'))(':memory:').close()" >/dev/null 2>&1; then
    echo "install.sh: building better-sqlite3 from source…"
    npm rebuild better-sqlite3
    node -e "new (require('better-sqlite3'))(':memory:').close()"
fi

echo "$want_stamp" > "$stamp_file"
echo "install.sh: done"
