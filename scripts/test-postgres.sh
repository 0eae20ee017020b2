# A throwaway PostgreSQL server for the tests; sourced by scripts/test.
#
#   source scripts/test-postgres.sh
#   start_test_postgres      # exports BACKOUT_TEST_POSTGRES, BACKOUT_TEST_PG_BIN, BACKOUT_TEST_PG_USER
#   ...                      # run tests
#   stop_test_postgres       # stops it and deletes its data (scripts/test traps EXIT)
#
# The server runs from Debian's `postgresql` package (installed by
# scripts/test when missing) as an unprivileged user (initdb refuses root:
# when run as root, a system user `backout-test` is created once), with its
# data in a temporary directory, listening on 127.0.0.1 on a free port and on
# a unix socket in that directory, fsync on (the store's tests are about
# durability), and trust authentication (it is reachable from this machine
# only and lives as long as the test run).
#
# What tests get:
#   BACKOUT_TEST_POSTGRES  postgres://USER@127.0.0.1:PORT/postgres, a superuser:
#                          tests may CREATE DATABASE (one per test) on it
#   BACKOUT_TEST_PG_BIN    the directory of initdb, pg_ctl, postgres: for tests
#                          that need a server of their own (to restart it)
#   BACKOUT_TEST_PG_USER   the user to run those as (empty: the current user)

# The directory holding initdb and pg_ctl, newest version first.
find_pg_bin() {
    local d
    for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k4 -V -r); do
        if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then
            echo "$d"
            return 0
        fi
    done
    if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
        dirname "$(command -v initdb)"
        return 0
    fi
    return 1
}

# A TCP port nobody listens on right now (the server may still lose a race
# for it; start_test_postgres then tries another).
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Runs a command as the server's user.
as_pg_user() {
    if [ -n "$BACKOUT_TEST_PG_USER" ]; then
        runuser -u "$BACKOUT_TEST_PG_USER" -- "$@"
    else
        "$@"
    fi
}

start_test_postgres() {
    BACKOUT_TEST_PG_BIN=$(find_pg_bin) || {
        echo "error: PostgreSQL's initdb and pg_ctl were not found (Debian package: postgresql)" >&2
        return 1
    }
    BACKOUT_TEST_PG_USER=""
    if [ "$(id -u)" = 0 ]; then
        BACKOUT_TEST_PG_USER=backout-test
        if ! id -u "$BACKOUT_TEST_PG_USER" >/dev/null 2>&1; then
            useradd --system --no-create-home --shell /usr/sbin/nologin "$BACKOUT_TEST_PG_USER"
        fi
    fi
    export BACKOUT_TEST_PG_BIN BACKOUT_TEST_PG_USER
    TEST_PG_DIR=$(mktemp -d "${TMPDIR:-/tmp}/backout-test-pg.XXXXXX")
    chmod 755 "$TEST_PG_DIR"
    [ -z "$BACKOUT_TEST_PG_USER" ] || chown "$BACKOUT_TEST_PG_USER" "$TEST_PG_DIR"
    local user=${BACKOUT_TEST_PG_USER:-$(id -un)}
    # --no-sync: initdb's own files need no fsync for a throwaway cluster;
    # the server below runs with fsync on.
    as_pg_user "$BACKOUT_TEST_PG_BIN/initdb" -D "$TEST_PG_DIR/data" -U "$user" \
        --auth=trust --encoding=UTF8 --no-locale --no-sync >"$TEST_PG_DIR/initdb.log" 2>&1 || {
        cat "$TEST_PG_DIR/initdb.log" >&2
        return 1
    }
    local port attempt
    for attempt in 1 2 3; do
        port=$(free_port)
        if as_pg_user "$BACKOUT_TEST_PG_BIN/pg_ctl" -D "$TEST_PG_DIR/data" -l "$TEST_PG_DIR/server.log" \
            -w -t 60 -o "-p $port -k $TEST_PG_DIR -c listen_addresses=127.0.0.1 -c fsync=on \
                -c synchronous_commit=on -c max_connections=300 -c shared_buffers=32MB" \
            start >/dev/null; then
            export BACKOUT_TEST_POSTGRES="postgres://$user@127.0.0.1:$port/postgres"
            echo "PostgreSQL $("$BACKOUT_TEST_PG_BIN/postgres" --version | awk '{print $3}') for the tests: $BACKOUT_TEST_POSTGRES"
            return 0
        fi
        echo "PostgreSQL did not start on port $port (attempt $attempt):" >&2
        tail -5 "$TEST_PG_DIR/server.log" >&2 || true
    done
    return 1
}

stop_test_postgres() {
    if [ -n "${TEST_PG_DIR:-}" ] && [ -d "$TEST_PG_DIR" ]; then
        as_pg_user "$BACKOUT_TEST_PG_BIN/pg_ctl" -D "$TEST_PG_DIR/data" -m fast -w stop >/dev/null 2>&1 || true
        rm -rf "$TEST_PG_DIR"
    fi
    TEST_PG_DIR=""
}
