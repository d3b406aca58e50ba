#!/bin/sh
# Refresh the browser libraries in static/vendor/ from pinned npm versions.
# Only the ES module builds, their source maps and the licences are kept (the code colours
# live in static/css/chat.css as theme variables, after highlight.js's GitHub themes).
# Usage: scripts/vendor.sh   (needs npm; bump a version below, run, review the diff, commit)
set -eu

MARKED=18.2.1
DOMPURIFY=3.4.18
HIGHLIGHT=11.12.0
ESBUILD=0.28.2  # minifies DOMPurify, which ships no minified ES module

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DEST="$ROOT/static/vendor"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

fetch() {  # fetch <package@version> <dir>: unpack an npm tarball into $WORK/<dir>
    (cd "$WORK" && npm pack --silent "$1" >/dev/null)
    mkdir -p "$WORK/$2"
    tar xzf "$WORK"/*.tgz -C "$WORK/$2" --strip-components=1
    rm "$WORK"/*.tgz
}

fetch "marked@$MARKED" marked
fetch "dompurify@$DOMPURIFY" dompurify
fetch "@highlightjs/cdn-assets@$HIGHLIGHT" highlight

rm -rf "$DEST"
mkdir -p "$DEST/marked" "$DEST/dompurify" "$DEST/highlight"

cp "$WORK/marked/lib/marked.esm.js" "$WORK/marked/lib/marked.esm.js.map" \
    "$WORK/marked/LICENSE" "$DEST/marked/"

# Minified, keeping its licence comment; .js rather than .mjs so every static server sends a
# JavaScript MIME type.
(cd "$WORK" && npx --yes "esbuild@$ESBUILD" dompurify/dist/purify.es.mjs --minify --format=esm \
    --legal-comments=inline --log-level=warning --outfile="$DEST/dompurify/purify.es.min.js")
cp "$WORK/dompurify/LICENSE" "$WORK/dompurify/LICENSE-MPL" "$DEST/dompurify/"

# The "common languages" build as one ES module.
cp "$WORK/highlight/es/highlight.min.js" "$WORK/highlight/LICENSE" "$DEST/highlight/"

cat >"$DEST/VERSIONS" <<EOF
marked $MARKED
dompurify $DOMPURIFY
@highlightjs/cdn-assets $HIGHLIGHT
EOF
echo "static/vendor refreshed:"
cat "$DEST/VERSIONS"
