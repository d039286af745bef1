#!/bin/sh
# ESLint and the JSDoc type check (tsc --checkJs --noEmit, see tsconfig.json) of the
# web client: `just lint` and tests/test_web_lint.py run this. build.sh first installs
# node_modules from package-lock.json when they are missing or stale (npm ci).
set -eu
cd "$(dirname "$0")"
sh build.sh
npm run --silent lint
