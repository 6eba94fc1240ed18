#!/bin/sh
# Installs the Debian packages jobmatch builds against, only when one of them
# is missing. Run by the Makefile; safe to run by hand (needs root or sudo).
set -eu
need=""
check() { # header package
    # On Debian the package itself is asked for: a header of the same name can
    # come from another package (netlib's libblas-dev also ships cblas.h, but
    # jobmatch links OpenBLAS through its pkg-config file).
    if command -v dpkg-query >/dev/null 2>&1; then
        dpkg-query -W -f='${Status}\n' "$2" 2>/dev/null | grep -q 'install ok installed' || need="$need $2"
    elif ! printf '#include <%s>\n' "$1" | ${CC:-cc} $(pkg-config --cflags openblas libpq 2>/dev/null) -I/usr/include/postgresql -E -x c - >/dev/null 2>&1; then
        need="$need $2"
    fi
}
check cblas.h libopenblas-dev
check utf8proc.h libutf8proc-dev
check cjson/cJSON.h libcjson-dev
check sqlite3.h libsqlite3-dev
check openssl/sha.h libssl-dev
check libpq-fe.h libpq-dev
check microhttpd.h libmicrohttpd-dev
command -v pkg-config >/dev/null 2>&1 || need="$need pkg-config"
[ -z "$need" ] && exit 0
echo "install-deps: installing$need" >&2
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq $need >/dev/null
