#!/bin/sh
# Installs the Debian packages jobmatch builds against, only when one of their
# headers is missing. Run by the Makefile; safe to run by hand (needs root or sudo).
set -eu
need=""
check() { # header package
    if ! printf '#include <%s>\n' "$1" | ${CC:-cc} $(pkg-config --cflags openblas libpq 2>/dev/null) -I/usr/include/postgresql -E -x c - >/dev/null 2>&1; then
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
