#!/usr/bin/env bash
# Fetch ONNX Runtime's C/C++ API headers (Debian's libonnxruntime-dev, 1.21) into DEST.
# The .deb is downloaded and unpacked, never installed. The mirror is taken from this
# machine's own apt configuration; the suite is Debian 13 "trixie" (the first with the package).
# Usage: tools/fetch_ort_headers.sh DEST   (DEST/include/onnxruntime_c_api.h afterwards)
set -euo pipefail
dest=${1:?usage: fetch_ort_headers.sh DEST}
if [ -f "$dest/include/onnxruntime_c_api.h" ]; then exit 0; fi
command -v apt-get >/dev/null || { echo "fetch_ort_headers: apt-get not found; set ONNXRUNTIME_INCLUDE_DIR to ORT's headers" >&2; exit 1; }

mirror=""
for f in /etc/apt/sources.list.d/*.sources; do
  [ -f "$f" ] || continue
  m=$(awk '/^URIs:/{print $2; exit}' "$f")
  case "$m" in */debian) mirror=$m; break ;; esac
done
if [ -z "$mirror" ] && [ -f /etc/apt/sources.list ]; then
  mirror=$(awk '$1=="deb" && $2 ~ /\/debian\/?$/ {print $2; exit}' /etc/apt/sources.list)
fi
[ -n "$mirror" ] || { echo "fetch_ort_headers: no Debian mirror in the apt configuration" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/src" "$work/lists/partial" "$work/cache/archives/partial"
printf 'Types: deb\nURIs: %s\nSuites: trixie\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
  "$mirror" >"$work/src/trixie.sources"
opts=(-o Dir::Etc::SourceList=/dev/null -o "Dir::Etc::SourceParts=$work/src"
      -o "Dir::State::Lists=$work/lists" -o "Dir::Cache=$work/cache"
      -o Dir::State::status=/dev/null -o APT::Sandbox::User=root -qq)
apt-get "${opts[@]}" update
(cd "$work" && apt-get "${opts[@]}" download libonnxruntime-dev)
dpkg-deb -x "$work"/libonnxruntime-dev_*.deb "$work/x"
mkdir -p "$dest"
rm -rf "$dest/include"
cp -r "$work/x/usr/include/onnxruntime" "$dest/include"
echo "fetch_ort_headers: ORT headers in $dest/include"
