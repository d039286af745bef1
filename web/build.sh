#!/bin/sh
# Build the web client into web/dist (served by nginx at /).
#
# No bundler: the ES modules in src/assets and the socket.io client's ESM build
# are copied into dist/assets/<version>/, where <version> is a checksum of all
# inputs, so nginx can cache /assets/ forever. `npm ci` runs only when
# node_modules is missing or package-lock.json changed; when nothing changed
# the script only computes the checksum and exits.
# Several test stacks may call this at once: a lock directory serialises them.
set -eu

cd "$(dirname "$0")"
WEB=$(pwd)
SIO=node_modules/socket.io-client/dist/socket.io.esm.min.js
# Swagger UI for the services' /api/<service>/schema/swagger pages, served from
# /assets/swagger-ui-<version>/ (same origin, no CDN); the version is in the path,
# so the year-long cache of /assets/ holds, and services/common/web.py names it.
SWAGGER=node_modules/swagger-ui-dist
SWAGGER_FILES="swagger-ui-bundle.js swagger-ui-standalone-preset.js swagger-ui.css favicon-32x32.png"

LOCK="$WEB/.build.lock"
tries=0
until mkdir "$LOCK" 2>/dev/null; do
    holder=$(cat "$LOCK/pid" 2>/dev/null || true)
    if [ -n "$holder" ] && ! kill -0 "$holder" 2>/dev/null; then
        rm -rf "$LOCK"   # left behind by a build that died
        continue
    fi
    tries=$((tries + 1))
    if [ "$tries" -gt 600 ]; then
        echo "web/build.sh: $LOCK is held by pid ${holder:-?} for 2 minutes; giving up" >&2
        exit 1
    fi
    sleep 0.2
done
echo $$ > "$LOCK/pid"
trap 'rm -rf "$LOCK"' EXIT
trap 'exit 1' INT TERM HUP

# ---- dependencies
lock_sum=$(cksum < package-lock.json)
if [ ! -f "$SIO" ] || [ ! -f "$SWAGGER/swagger-ui-bundle.js" ] || [ "$(cat node_modules/.quizrt-lock 2>/dev/null || true)" != "$lock_sum" ]; then
    if ! command -v npm >/dev/null 2>&1; then
        echo "web/build.sh: npm is missing (Debian: apt-get install -y nodejs npm)" >&2
        exit 1
    fi
    echo "web/build.sh: npm ci" >&2
    npm ci --no-audit --no-fund --loglevel=error >&2
    echo "$lock_sum" > node_modules/.quizrt-lock
fi

# ---- version of the inputs
files=$(find src -type f | LC_ALL=C sort)
# shellcheck disable=SC2086  # file names are ours: no spaces
swagger_version=$(node -p "require('./$SWAGGER/package.json').version")
version=v$(cat build.sh $files "$SIO" "$SWAGGER/package.json" | cksum | cut -d' ' -f1)
if [ -f dist/.version ] && [ "$(cat dist/.version)" = "$version" ] && [ -f dist/index.html ]; then
    exit 0
fi

# ---- a syntax error in one module would blank the whole page: refuse it here
for f in src/assets/*.js; do
    node --check "$f" || { echo "web/build.sh: syntax error in $f" >&2; exit 1; }
done

# ---- build into a fresh folder, then swap it in
tmp="dist.tmp.$$"
rm -rf "$tmp"
mkdir -p "$tmp/assets/$version"
cp src/assets/* "$tmp/assets/$version/"
cp "$SIO" "$tmp/assets/$version/socket.io.esm.min.js"
mkdir -p "$tmp/assets/swagger-ui-$swagger_version"
for f in $SWAGGER_FILES; do cp "$SWAGGER/$f" "$tmp/assets/swagger-ui-$swagger_version/"; done

# Preload every module so the browser fetches them in parallel, not one import at a time.
preloads=""
for f in "$tmp/assets/$version"/*.js; do
    name=$(basename "$f")
    [ "$name" = app.js ] && continue
    preloads="$preloads  <link rel=\"modulepreload\" href=\"/assets/$version/$name\">\\
"
done
sed -e "s|{{VERSION}}|$version|g" \
    -e "/{{PRELOADS}}/c\\
$preloads" src/index.html > "$tmp/index.html"
echo "$version" > "$tmp/.version"

rm -rf dist.old
[ -d dist ] && mv dist dist.old
mv "$tmp" dist
rm -rf dist.old
echo "web/build.sh: built web/dist ($version)" >&2
