#!/bin/sh
# A private PostgreSQL server for the tests: its own data directory, port and
# role, nothing shared with a system cluster. Installs Debian's postgresql
# package when no server binaries are found (needs root or sudo).
#
#   sh tests/pg.sh start DIR PORT     init DIR if needed, start on 127.0.0.1:PORT
#                                     (and a unix socket in DIR), print the URL
#   sh tests/pg.sh stop DIR           stop it (fast shutdown); a no-op if stopped
#   sh tests/pg.sh url DIR            print the URL again
#   sh tests/pg.sh createrole DIR NAME PASSWORD  a login role (if absent), for tests
#   sh tests/pg.sh createdb DIR NAME  (re)create an empty database NAME owned by
#                                     the test role, print its URL
#   sh tests/pg.sh status DIR         exit 0 when running
#
# Layout: DIR/data (the cluster), DIR/log, DIR/port, and the socket
# DIR/.s.PGSQL.PORT. The server runs as the `postgres` OS user, never as root;
# DIR and its parents must be reachable by that user (/tmp is fine).
# Durability is switched off (fsync, full_page_writes): it is a test server.
set -eu

ROLE=jm
PASS=jmpass
DBNAME=jobmatch_test

die() { echo "pg.sh: $*" >&2; exit 1; }

usage() {
    sed -n '2,14p' "$0" >&2
    exit 2
}

# Newest installed server's bin directory, installing the package if none.
find_bin() {
    BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    if [ -z "$BIN" ] || [ ! -x "$BIN/pg_ctl" ]; then
        echo "pg.sh: installing postgresql" >&2
        SUDO=""
        [ "$(id -u)" -eq 0 ] || SUDO=sudo
        $SUDO apt-get update -qq >&2
        $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
        BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
        [ -n "$BIN" ] && [ -x "$BIN/pg_ctl" ] || die "postgresql installed but no pg_ctl found"
    fi
}

# Run a command as the server's OS user (postgres when we are root).
as_pg() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

abs_dir() { # make DIR absolute (the socket path and pg_ctl -D need it)
    case "$1" in
    /*) D=$1 ;;
    *) D=$(pwd)/$1 ;;
    esac
    D=${D%/}
}

url_for() { # port dbname
    echo "postgresql://$ROLE:$PASS@127.0.0.1:$1/$2"
}

psql_admin() { # superuser over the unix socket (trust for local connections)
    as_pg "$BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$D" -p "$(cat "$D/port")" -U postgres -d postgres "$@"
}

# Is the postmaster named in DIR/data/postmaster.pid alive? (pg_ctl status alone
# is fooled by a zombie or by a pid that now belongs to another program.)
running() {
    pidfile=$D/data/postmaster.pid
    [ -f "$pidfile" ] || return 1
    pid=$(head -n 1 "$pidfile" 2>/dev/null || true)
    case "$pid" in '' | *[!0-9]*) return 1 ;; esac
    [ -r "/proc/$pid/stat" ] || return 1
    # /proc/PID/stat: "pid (comm) state ..."
    stat=$(cat "/proc/$pid/stat" 2>/dev/null || true)
    case "$stat" in
    *"(postgres) Z"* | *"(postmaster) Z"*) return 1 ;;
    *"(postgres) "* | *"(postmaster) "*) return 0 ;;
    esac
    return 1
}

# A postmaster.pid left by a killed server (or a reboot): remove it so the
# server can start. Only called when running() said no.
clear_stale_pid() {
    pidfile=$D/data/postmaster.pid
    [ -f "$pidfile" ] || return 0
    echo "pg.sh: removing stale $pidfile" >&2
    rm -f "$pidfile"
}

init_cluster() {
    created=0
    [ -d "$D" ] || { mkdir -p "$D" && created=1; }
    if [ "$(id -u)" -eq 0 ]; then
        chown postgres: "$D"
        if ! as_pg test -w "$D"; then
            [ $created -eq 0 ] || rmdir "$D"
            die "$D is not reachable by the postgres user (choose a directory under /tmp)"
        fi
    fi
    chmod 700 "$D"
    [ -f "$D/data/PG_VERSION" ] && return 0
    rm -rf "$D/data"
    as_pg "$BIN/initdb" -D "$D/data" -U postgres -E UTF8 --no-locale \
        --auth-local=trust --auth-host=scram-sha-256 >"$D/initdb.log" 2>&1 ||
        { cat "$D/initdb.log" >&2; die "initdb failed"; }
    cat >>"$D/data/postgresql.conf" <<EOF

# tests/pg.sh: a throwaway test server
listen_addresses = '127.0.0.1'
unix_socket_directories = '$D'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 50
password_encryption = 'scram-sha-256'
log_min_messages = warning
EOF
}

cmd_start() {
    [ $# -eq 2 ] || usage
    abs_dir "$1"
    port=$2
    case "$port" in '' | *[!0-9]*) die "bad port: $port" ;; esac
    find_bin
    init_cluster
    if running; then
        if [ "$(cat "$D/port" 2>/dev/null)" != "$port" ]; then
            as_pg "$BIN/pg_ctl" -D "$D/data" -m fast -w stop >/dev/null
        fi
    fi
    if ! running; then
        clear_stale_pid
        echo "$port" >"$D/port"
        touch "$D/log"
        [ "$(id -u)" -eq 0 ] && chown postgres: "$D/log" "$D/port"
        # A retry covers the backends of a killed server that still hold its
        # shared memory for a moment after their postmaster died.
        tries=0
        until as_pg "$BIN/pg_ctl" -D "$D/data" -l "$D/log" -o "-p $port" -w -t 60 start >/dev/null 2>&1; do
            tries=$((tries + 1))
            if [ $tries -ge 3 ]; then
                tail -n 20 "$D/log" >&2
                die "server did not start on port $port (log: $D/log)"
            fi
            clear_stale_pid
            sleep 2
        done
    fi
    i=0
    until as_pg "$BIN/pg_isready" -q -h 127.0.0.1 -p "$port" -d postgres; do
        i=$((i + 1))
        [ $i -lt 60 ] || die "server not accepting connections on 127.0.0.1:$port"
        sleep 0.5
    done
    # The test role may create databases: each test run isolates itself in one.
    psql_admin <<EOF
SELECT format('CREATE ROLE %I LOGIN CREATEDB', '$ROLE')
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '$ROLE') \gexec
ALTER ROLE $ROLE WITH LOGIN CREATEDB PASSWORD '$PASS';
SELECT format('CREATE DATABASE %I OWNER %I', '$DBNAME', '$ROLE')
 WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = '$DBNAME') \gexec
EOF
    url_for "$port" "$DBNAME"
}

cmd_stop() {
    [ $# -eq 1 ] || usage
    abs_dir "$1"
    find_bin
    [ -d "$D/data" ] || return 0
    if running; then
        as_pg "$BIN/pg_ctl" -D "$D/data" -m fast -w -t 60 stop >/dev/null
    else
        clear_stale_pid
    fi
}

cmd_url() {
    [ $# -eq 1 ] || usage
    abs_dir "$1"
    [ -f "$D/port" ] || die "no server in $D (run: sh tests/pg.sh start $1 PORT)"
    url_for "$(cat "$D/port")" "$DBNAME"
}

cmd_createdb() {
    [ $# -eq 2 ] || usage
    abs_dir "$1"
    name=$2
    case "$name" in '' | *[!A-Za-z0-9_]*) die "bad database name: $name (use [A-Za-z0-9_])" ;; esac
    find_bin
    running || die "no server running in $D"
    psql_admin <<EOF
SET client_min_messages = warning;
DROP DATABASE IF EXISTS "$name" WITH (FORCE);
CREATE DATABASE "$name" OWNER $ROLE;
EOF
    url_for "$(cat "$D/port")" "$name"
}

cmd_createrole() {
    [ $# -eq 3 ] || usage
    abs_dir "$1"
    case "$2$3" in '' | *[!A-Za-z0-9_]*) die "bad role name or password (use [A-Za-z0-9_])" ;; esac
    find_bin
    running || die "no server running in $D"
    psql_admin <<EOF
SET client_min_messages = warning;
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$2') THEN CREATE ROLE $2 LOGIN PASSWORD '$3'; END IF;
END \$\$;
EOF
}

cmd_status() {
    [ $# -eq 1 ] || usage
    abs_dir "$1"
    find_bin
    [ -d "$D/data" ] && running
}

[ $# -ge 1 ] || usage
cmd=$1
shift
case "$cmd" in
start) cmd_start "$@" ;;
stop) cmd_stop "$@" ;;
url) cmd_url "$@" ;;
createdb) cmd_createdb "$@" ;;
createrole) cmd_createrole "$@" ;;
status) cmd_status "$@" ;;
*) usage ;;
esac
