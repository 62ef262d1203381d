#!/usr/bin/env bash
# Refresh the vendored front-end files from the npm registry and print their sha256 sums.
# Usage: bash web/static/vendor/refresh.sh   (versions are pinned below; change them here and in VENDOR.md)
set -euo pipefail
DEST="$(cd "$(dirname "$0")" && pwd)"
HTMX=2.0.11
CHARTJS=4.6.1
PICO=2.1.1
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
cd "$TMP"
npm pack --silent "htmx.org@$HTMX" "chart.js@$CHARTJS" "@picocss/pico@$PICO" >/dev/null
for f in *.tgz; do mkdir "${f%.tgz}"; tar xzf "$f" -C "${f%.tgz}"; done
mkdir -p "$DEST/htmx" "$DEST/chart.js" "$DEST/pico"
cp "htmx.org-$HTMX/package/dist/htmx.min.js" "htmx.org-$HTMX/package/LICENSE" "$DEST/htmx/"
cp "chart.js-$CHARTJS/package/dist/chart.umd.min.js" "chart.js-$CHARTJS/package/LICENSE.md" "$DEST/chart.js/"
cp "picocss-pico-$PICO/package/css/pico.min.css" "picocss-pico-$PICO/package/LICENSE.md" "$DEST/pico/"
cd "$DEST" && sha256sum htmx/htmx.min.js chart.js/chart.umd.min.js pico/pico.min.css
