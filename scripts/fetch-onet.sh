#!/bin/sh
# Prints the directory holding the O*NET demo corpus ("Occupation Data.txt" and
# "Technology Skills.txt"), fetching it first when needed:
#   1. $JOBMATCH_ONET_DIR, if set;
#   2. ../shared/data/onet (next to the project, as on the development machines);
#   3. build/onet, downloaded once from the O*NET Resource Center (the text
#      release of the database, CC BY 4.0; credit: see the web page's footer).
# The files are never committed.
set -eu
cd "$(dirname "$0")/.."
has() { [ -f "$1/Occupation Data.txt" ] && [ -f "$1/Technology Skills.txt" ]; }
if [ -n "${JOBMATCH_ONET_DIR:-}" ]; then
    has "$JOBMATCH_ONET_DIR" || { echo "fetch-onet: $JOBMATCH_ONET_DIR lacks the O*NET files" >&2; exit 1; }
    echo "$JOBMATCH_ONET_DIR"; exit 0
fi
if has ../shared/data/onet; then echo "../shared/data/onet"; exit 0; fi
if has build/onet; then echo "build/onet"; exit 0; fi
VERSION=${ONET_VERSION:-28_0}
URL="https://www.onetcenter.org/dl_files/database/db_${VERSION}_text.zip"
mkdir -p build/onet.tmp
echo "fetch-onet: downloading $URL" >&2
if command -v curl >/dev/null 2>&1; then
    curl -fsSL --retry 3 -o build/onet.tmp/onet.zip "$URL"
else
    wget -q -O build/onet.tmp/onet.zip "$URL"
fi
if command -v unzip >/dev/null 2>&1; then
    (cd build/onet.tmp && unzip -j -o -q onet.zip '*/Occupation Data.txt' '*/Technology Skills.txt')
else # no unzip: Python's zipfile module can extract it
    (cd build/onet.tmp && python3 -m zipfile -e onet.zip x && find x -name '*.txt' \( -name 'Occupation Data.txt' -o -name 'Technology Skills.txt' \) -exec mv {} . \; && rm -rf x)
fi
has build/onet.tmp || { echo "fetch-onet: the download lacks the expected files" >&2; exit 1; }
rm -f build/onet.tmp/onet.zip
rm -rf build/onet && mv build/onet.tmp build/onet
echo "build/onet"
