#!/usr/bin/env bash
# The project's two front doors, from a fresh clone:
#   ./cubes.sh demo   set up, start the project-local PostgreSQL, load the demo
#                     Campaign data, build both aggregates, show a few rows
#   ./cubes.sh test   set up (with what the Spark target needs), then run the whole
#                     test suite (lint, dbt build and unit tests on demo data, Python tests)
# Extra arguments go to `orchestrate.py demo` or to pytest.
set -euo pipefail
cd "$(dirname "$0")"

# PostgreSQL server binaries, from Debian's package when missing. Not needed
# when PGHOST points at a server of your own.
ensure_postgresql() {
    if [ -n "${PGHOST:-}" ] || compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then
        return
    fi
    if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
        echo "cubes.sh: PostgreSQL is not installed; install Debian's 'postgresql' package" \
             "(or set PGHOST etc. to use an existing server)" >&2
        exit 3
    fi
    echo "cubes.sh: installing PostgreSQL (Debian package 'postgresql')"
    # The project runs its own cluster; Debian's default one would only sit on port 5432.
    mkdir -p /etc/postgresql-common
    [ -f /etc/postgresql-common/createcluster.conf ] \
        || echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.conf
    apt-get update -qq
    # keep that file without asking (it is one of the package's configuration files)
    DEBIAN_FRONTEND=noninteractive UCF_FORCE_CONFFOLD=1 apt-get install -y -qq \
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold postgresql >/dev/null
}

# The Spark path (docs/spark.md) and its tests: a Java runtime for pyspark and the
# PostgreSQL JDBC driver for `orchestrate.py --target spark land`, from Debian's
# packages when missing (the Python side is in requirements-dev.lock).
ensure_spark_runtime() {
    if command -v java >/dev/null && [ -f /usr/share/java/postgresql.jar ]; then
        return
    fi
    if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
        echo "cubes.sh: the Spark target needs Java 17 and the PostgreSQL JDBC driver; install Debian's" \
             "'default-jre-headless' and 'libpostgresql-jdbc-java'" >&2
        return
    fi
    echo "cubes.sh: installing Java and the PostgreSQL JDBC driver (Debian packages)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq default-jre-headless libpostgresql-jdbc-java >/dev/null
}

# The project's virtualenv: the locked packages of $1, then the project itself,
# editable, so that the `campaign-cubes` command exists too. requirements.lock
# holds what the jobs and the report need; requirements-dev.lock adds the tests,
# the linters and the Spark target (both generated from pyproject.toml with
# pip-compile, the first constrained by the second). Reinstalled when the lock changes.
ensure_virtualenv() {
    local lock="$1"
    if [ ! -x .venv/bin/python ]; then
        python3 -m venv .venv
    fi
    if ! cmp -s "$lock" ".venv/$lock.installed"; then
        echo "cubes.sh: installing Python packages ($lock)"
        .venv/bin/pip install --quiet --disable-pip-version-check -r "$lock"
        .venv/bin/pip install --quiet --disable-pip-version-check --no-deps -e .
        cp "$lock" ".venv/$lock.installed"
    fi
}

setup() {
    ensure_postgresql
    ensure_virtualenv "${1:-requirements.lock}"
    [ -f profiles.yml ] || cp profiles.yml.example profiles.yml
    export DBT_SEND_ANONYMOUS_USAGE_STATS=false
}

case "${1:-}" in
    demo) setup; exec .venv/bin/python orchestrate.py demo "${@:2}" ;;
    test) setup requirements-dev.lock; ensure_spark_runtime; exec .venv/bin/python -m pytest "${@:2}" ;;
    setup) setup ;;
    *)
        echo "usage: ./cubes.sh demo|test|setup [arguments]" >&2
        exit 2
        ;;
esac
