#!/bin/sh
# Render a self-contained HTML report in headless Chromium, take a screenshot, fail on console errors.
#   docs/studies/render_html.sh REPORT.html SHOT.png
# Needs Debian's chromium (apt-get install -y chromium).
set -eu
html=$(realpath "$1"); shot=$(realpath -m "$2")
bin=$(command -v chromium || command -v chromium-browser || command -v google-chrome)
log=$(mktemp)
timeout 60 "$bin" --headless --no-sandbox --disable-gpu --disable-background-networking \
  --hide-scrollbars --window-size=1400,1000 --screenshot="$shot" \
  --enable-logging=stderr --v=0 "file://$html" 2>"$log" >/dev/null || { cat "$log" >&2; exit 1; }
if grep -E 'CONSOLE|Uncaught|net::ERR_' "$log" >&2; then
  echo "console errors while rendering $html" >&2; rm -f "$log"; exit 1
fi
rm -f "$log"
test -s "$shot"
echo "ok: $shot"
