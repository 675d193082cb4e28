#!/usr/bin/env bash
# (Re)generates the seed corpus tests/fuzz/corpus/<target>/ from tests/fuzz/make_seeds.c.
# The generator is deterministic: `make-seeds.sh --check` regenerates into a temp dir and
# fails if the committed corpus differs. Files named regress-* are inputs committed by hand
# (a crash or hang a fuzzing run found, kept as a regression test): kept, never compared.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"${CC:-cc}" -std=gnu11 -O1 -Wall -Wextra -Werror -I"$root/include" -o "$tmp/make_seeds" \
    "$here/make_seeds.c"
"$tmp/make_seeds" "$tmp/corpus"
if [ "${1:-}" = --check ]; then
    if diff -r -x 'regress-*' "$tmp/corpus" "$here/corpus" >/dev/null; then
        echo "make-seeds: the corpus is up to date"
    else
        echo "make-seeds: tests/fuzz/corpus differs from what make_seeds.c generates" >&2
        exit 1
    fi
else
    for f in "$here"/corpus/*/regress-*; do
        [ -e "$f" ] || continue
        t=$(basename "$(dirname "$f")")
        mkdir -p "$tmp/corpus/$t"
        cp "$f" "$tmp/corpus/$t/"
    done
    rm -rf "$here/corpus"
    cp -r "$tmp/corpus" "$here/corpus"
    du -sh "$here/corpus"
fi
