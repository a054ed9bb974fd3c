#!/usr/bin/env bash
# Opens a report.html in headless Chromium and writes a full-page screenshot beside it, to look
# at in review (the page must read without network access and without JavaScript).
# Run by hand, as root on Debian: installs chromium if it is missing (nothing is started that
# outlives the script).
#   sudo scripts/html-check.sh experiments/quick/report.html [WIDTH] [HEIGHT]
set -euo pipefail
page=${1:?usage: html-check.sh REPORT.html [WIDTH] [HEIGHT]}
width=${2:-1280}
height=${3:-4000}
[[ -f $page ]] || { echo "html-check: $page: no such file" >&2; exit 1; }
if ! command -v chromium >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
out="${page%.html}.png"
# JavaScript off: the page must read without it, so the screenshot is of the page with its
# (optional) script removed. No network: a proxy that does not exist, so anything the page tried
# to fetch would be missing from the picture.
bare=$(mktemp --suffix=.html -p "$(dirname "$(realpath "$page")")")
trap 'rm -f "$bare"' EXIT
sed 's|<script>.*</script>||' "$page" > "$bare"
chromium --headless=new --no-sandbox --disable-gpu --hide-scrollbars \
    --proxy-server=127.0.0.1:9 --window-size="$width,$height" \
    --screenshot="$out" "file://$bare" >/dev/null 2>&1
[[ -s $out ]] || { echo "html-check: chromium wrote no screenshot" >&2; exit 1; }
echo "html-check: wrote $out (${width}x${height}, without JavaScript, no network)"
