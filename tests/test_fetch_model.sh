#!/bin/sh
# test_fetch_model.sh - scripts/fetch-model.sh against local sources only: the
# installed model ($JM_TEST_MODEL) as JOBMATCH_MODEL_DIR, so no network is used,
# and MODEL_DIR in a temp dir, so the real model is never touched.
# Ends with "test_fetch_model: N passed, N failed"; exit 1 if anything failed.
set -u
cd "$(dirname "$0")/.." || exit 1
pass=0
fail=0
ok() { pass=$((pass + 1)); }
bad() {
    fail=$((fail + 1))
    echo "FAIL: $*"
}
check() { # description command...
    d=$1
    shift
    if "$@"; then ok; else bad "$d"; fi
}

model=${JM_TEST_MODEL:-models/all-MiniLM-L6-v2}
case $model in /*) ;; *) model=$PWD/$model ;; esac
if [ ! -f "$model/model.safetensors" ]; then
    bad "$model/model.safetensors not found (run make model)"
    echo "test_fetch_model: $pass passed, $fail failed"
    exit 1
fi

tmp=$(mktemp -d /tmp/jm-fetch-test.XXXXXX) || exit 1
trap 'rm -rf "$tmp"' EXIT
out=$tmp/out

# fetch SRC DEST: run the script, output (stdout+stderr) in $out, status in $rc.
fetch() {
    JOBMATCH_MODEL_DIR=$1 MODEL_DIR=$2 sh scripts/fetch-model.sh >"$out" 2>&1
    rc=$?
}
has() { grep -q -- "$1" "$out"; }
lines() { [ "$(wc -l <"$out" | tr -d ' ')" -eq "$1" ]; }
no_leftovers() { [ -z "$(find "$1" -maxdepth 1 -name '.fetch-model.*')" ]; }
files="config.json model.safetensors vocab.txt tokenizer.json tokenizer_config.json
special_tokens_map.json sentence_bert_config.json modules.json 1_Pooling/config.json"
all_files() {
    for f in $files; do [ -f "$1/$f" ] || return 1; done
}
# A writable copy of the pinned files, safe to damage.
copy_model() {
    mkdir -p "$1/1_Pooling"
    for f in $files; do cp "$model/$f" "$1/$f" || return 1; done
}
flip_byte() { printf 'X' | dd of="$1" bs=1 seek="$2" conv=notrunc 2>/dev/null; }

# 1. A fresh fetch from a local source, reporting where the files came from.
fetch "$model" "$tmp/dest"
check "fresh fetch exits 0 (got $rc: $(cat "$out"))" [ "$rc" -eq 0 ]
check "fresh fetch names its source: $(cat "$out")" has "fetched from $model (JOBMATCH_MODEL_DIR)"
check "fresh fetch installs every file" all_files "$tmp/dest"
check "fresh fetch copies model.safetensors intact" cmp -s "$model/model.safetensors" "$tmp/dest/model.safetensors"
check "fresh fetch leaves no temp dir" no_leftovers "$tmp"

# 2. Idempotent: a second run checks and stops.
fetch "$model" "$tmp/dest"
check "rerun exits 0 (got $rc)" [ "$rc" -eq 0 ]
check "rerun says already present: $(cat "$out")" has "$tmp/dest already present (sha256 ok)"
check "rerun prints one line" lines 1

# 3. A source with an altered model.safetensors is refused in one line naming it.
copy_model "$tmp/src" || bad "copy the model"
flip_byte "$tmp/src/model.safetensors" 4000000
fetch "$tmp/src" "$tmp/dest2"
check "altered source refused (got $rc)" [ "$rc" -ne 0 ]
check "altered source: one line: $(cat "$out")" lines 1
check "altered source: names file and sha256: $(cat "$out")" has "$tmp/src/model.safetensors: sha256 mismatch"
check "altered source: no destination created" [ ! -e "$tmp/dest2" ]
check "altered source: no temp dir left" no_leftovers "$tmp"
cp "$model/model.safetensors" "$tmp/src/model.safetensors"

# 4. A source missing vocab.txt is refused naming the file.
mv "$tmp/src/vocab.txt" "$tmp/vocab.txt"
fetch "$tmp/src" "$tmp/dest2"
check "missing vocab.txt refused (got $rc)" [ "$rc" -ne 0 ]
check "missing vocab.txt: one line: $(cat "$out")" lines 1
check "missing vocab.txt: named: $(cat "$out")" has "$tmp/src: missing file vocab.txt"
mv "$tmp/vocab.txt" "$tmp/src/vocab.txt"

# 5. A truncated source file is named as truncated.
head -c 100 "$model/tokenizer.json" >"$tmp/src/tokenizer.json"
fetch "$tmp/src" "$tmp/dest2"
check "truncated tokenizer.json refused (got $rc)" [ "$rc" -ne 0 ]
check "truncated tokenizer.json named: $(cat "$out")" has "$tmp/src/tokenizer.json: truncated"
cp "$model/tokenizer.json" "$tmp/src/tokenizer.json"

# 6. A damaged installed model is fetched again; if the new copy is bad too, the
#    run fails and leaves the old directory as it was.
flip_byte "$tmp/dest/model.safetensors" 123
rm "$tmp/src/modules.json"
fetch "$tmp/src" "$tmp/dest"
check "damaged dest + bad source fails (got $rc)" [ "$rc" -ne 0 ]
check "damaged dest reported: $(cat "$out")" has "$tmp/dest/model.safetensors: sha256 mismatch"
check "bad source reported: $(cat "$out")" has "$tmp/src: missing file modules.json"
check "damaged dest left in place" all_files "$tmp/dest"
fetch "$model" "$tmp/dest"
check "damaged dest re-fetched (got $rc: $(cat "$out"))" [ "$rc" -eq 0 ]
check "re-fetch says so: $(cat "$out")" has "fetching it again"
check "re-fetched model.safetensors intact" cmp -s "$model/model.safetensors" "$tmp/dest/model.safetensors"
check "re-fetch leaves no temp dir" no_leftovers "$tmp"

echo "test_fetch_model: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
