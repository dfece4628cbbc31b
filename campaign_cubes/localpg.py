"""The project-local PostgreSQL server: the embedded default when no server is configured.

When ``PGHOST`` is set, the project uses that server and this module starts nothing.
Otherwise it runs its own cluster under ``.pglocal/`` (ignored by git), listening on
127.0.0.1 only, on a free port remembered between runs. PostgreSQL refuses to run as
root, so under root the server runs as an unprivileged user (Debian's ``postgres``).
The superuser ``cubes`` connects without a password (trust); every other role must
give its password (scram-sha-256), so that tests can prove what a role with a
password may and may not do.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from campaign_cubes import PROJECT_ROOT

STATE_LINK = PROJECT_ROOT / ".pglocal"
SUPERUSER = "cubes"
DATABASE = "campaign"
# Users that may own the cluster when we are root, in order of preference.
SERVER_USERS = ("postgres", "nobody")
# pg_hba.conf rules for everything but replication (initdb's replication lines stay):
# the superuser is trusted, any other role gives its password.
HBA_MARKER = "# campaign-cubes: the superuser is trusted, other roles give a password"
HBA_RULES = (
    f"local   all   {SUPERUSER}                  trust",
    f"host    all   {SUPERUSER}   127.0.0.1/32   trust",
    f"host    all   {SUPERUSER}   ::1/128        trust",
    "local   all   all                  scram-sha-256",
    "host    all   all     127.0.0.1/32   scram-sha-256",
    "host    all   all     ::1/128        scram-sha-256",
)


def hba_text(current: str) -> str:
    """`current` pg_hba.conf with our rules instead of its non-replication ones.

    Comments and replication lines are kept as they are, in place; our rules come
    first (pg_hba.conf is read top down, first match wins).
    """
    kept = [
        line
        for line in current.splitlines()
        if line != HBA_MARKER
        and line not in HBA_RULES
        and (not line.strip() or line.lstrip().startswith("#") or _is_replication_rule(line))
    ]
    return "\n".join([HBA_MARKER, *HBA_RULES, *kept]) + "\n"


def _is_replication_rule(line: str) -> bool:
    fields = line.split()
    return len(fields) > 1 and fields[1] == "replication"


class LocalServerError(RuntimeError):
    """A problem with the project-local server, worded for the person at the terminal."""


@dataclass(frozen=True)
class Connection:
    """libpq settings of a server, as the environment variables dbt and psql read."""

    host: str
    port: int
    user: str
    database: str

    def env(self) -> dict[str, str]:
        return {
            "PGHOST": self.host,
            "PGPORT": str(self.port),
            "PGUSER": self.user,
            "PGDATABASE": self.database,
        }


def external_server_configured(environ: dict[str, str] | None = None) -> bool:
    """True when the caller points at a server of its own (libpq's PGHOST)."""
    return bool((environ if environ is not None else os.environ).get("PGHOST"))


def find_bindir() -> Path:
    """The directory of initdb/pg_ctl/postgres, newest version first."""
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
        reverse=True,
    )
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    for bindir in candidates:
        if (bindir / "initdb").exists() and (bindir / "pg_ctl").exists():
            return bindir
    raise LocalServerError(
        "PostgreSQL server binaries (initdb, pg_ctl) were not found. Install Debian's "
        "'postgresql' package (apt-get install postgresql), or set PGHOST etc. to use "
        "an existing server."
    )


def _server_user() -> str | None:
    """The unprivileged user to run the server as, or None to run as ourselves."""
    if os.geteuid() != 0:
        return None
    for name in SERVER_USERS:
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        return name
    raise LocalServerError("running as root and no unprivileged user (postgres, nobody) exists")


def _as_user(user: str | None, argv: list[str]) -> list[str]:
    return ["runuser", "-u", user, "--", *argv] if user else argv


def _can_reach(user: str | None, path: Path) -> bool:
    """Whether `user` can create files in `path` (every parent must be searchable)."""
    if user is None:
        return os.access(path, os.W_OK | os.X_OK)
    probe = subprocess.run(_as_user(user, ["test", "-w", str(path), "-a", "-x", str(path)]))
    return probe.returncode == 0


def state_dir(user: str | None) -> Path:
    """Where the cluster lives: `.pglocal/` in the project, or a link to a reachable place.

    A clone under /root is not searchable by the `postgres` user; then the data goes
    under the system temporary directory and `.pglocal` becomes a symlink to it.
    """
    if STATE_LINK.is_symlink() or STATE_LINK.is_dir():
        return STATE_LINK.resolve()
    STATE_LINK.mkdir()
    if user is not None:
        shutil.chown(STATE_LINK, user)
    if _can_reach(user, STATE_LINK):
        return STATE_LINK
    STATE_LINK.rmdir()
    digest = hashlib.sha1(str(PROJECT_ROOT).encode()).hexdigest()[:10]
    elsewhere = Path(tempfile.gettempdir()) / f"campaign-cubes-pg-{digest}"
    elsewhere.mkdir(mode=0o755, exist_ok=True)
    if user is not None:
        shutil.chown(elsewhere, user)
    STATE_LINK.symlink_to(elsewhere)
    print(f"localpg: {user} cannot reach {PROJECT_ROOT}; cluster data lives in {elsewhere}")
    return elsewhere


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@dataclass(frozen=True)
class LocalServer:
    """The project's own cluster: where it lives, who runs it, which binaries."""

    bindir: Path
    root: Path
    user: str | None

    @classmethod
    def discover(cls) -> LocalServer:
        user = _server_user()
        return cls(bindir=find_bindir(), root=state_dir(user), user=user)

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def log_file(self) -> Path:
        return self.root / "server.log"

    @property
    def port_file(self) -> Path:
        return self.root / "port"

    def _run(self, argv: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(_as_user(self.user, argv), capture_output=True, text=True)

    def _check(self, argv: list[str], what: str) -> None:
        done = self._run(argv)
        if done.returncode != 0:
            raise LocalServerError(
                f"{what} failed (exit {done.returncode}):\n{done.stdout}{done.stderr}\nServer log: {self.log_file}"
            )

    def is_running(self) -> bool:
        if not (self.data_dir / "PG_VERSION").exists():
            return False
        return self._run([str(self.bindir / "pg_ctl"), "status", "-D", str(self.data_dir)]).returncode == 0

    def port(self) -> int:
        if self.port_file.exists():
            return int(self.port_file.read_text().strip())
        raise LocalServerError("the local server has never been started (python orchestrate.py db start)")

    def connection(self) -> Connection:
        return Connection(host="127.0.0.1", port=self.port(), user=SUPERUSER, database=DATABASE)

    def _initdb(self) -> None:
        self._check(
            [
                str(self.bindir / "initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                SUPERUSER,
                "--auth=trust",  # loopback only, a developer's throwaway cluster; see _apply_hba
                "--encoding=UTF8",
                "--locale=C",
            ],
            "initdb",
        )

    def _choose_port(self) -> int:
        if self.port_file.exists():
            remembered = int(self.port_file.read_text().strip())
            if _port_is_free(remembered):
                return remembered
        port = _free_port()
        self.port_file.write_text(f"{port}\n")
        return port

    def start(self) -> Connection:
        """Start the cluster (creating it on first use); idempotent."""
        if not self.is_running():
            if not (self.data_dir / "PG_VERSION").exists():
                self._initdb()
            port = self._choose_port()
            options = f"-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories=''"
            self._check(
                [
                    str(self.bindir / "pg_ctl"),
                    "start",
                    "-w",
                    "-t",
                    "60",
                    "-D",
                    str(self.data_dir),
                    "-l",
                    str(self.log_file),
                    "-o",
                    options,
                ],
                "starting PostgreSQL",
            )
        self._apply_hba()
        connection = self.connection()
        self._ensure_database(connection)
        return connection

    def _apply_hba(self) -> None:
        """Our authentication rules, on a new cluster as on an existing one (reloaded if changed)."""
        hba = self.data_dir / "pg_hba.conf"
        current = hba.read_text()
        wanted = hba_text(current)
        if wanted != current:
            hba.write_text(wanted)  # rewritten in place: owner and mode stay the server's
            self._check([str(self.bindir / "pg_ctl"), "reload", "-D", str(self.data_dir)], "reloading pg_hba.conf")

    def _ensure_database(self, connection: Connection) -> None:
        psql = [
            str(self.bindir / "psql"),
            "-h",
            connection.host,
            "-p",
            str(connection.port),
            "-U",
            SUPERUSER,
            "-d",
            "postgres",
            "-tAc",
        ]
        exists = self._run([*psql, f"select 1 from pg_database where datname = '{DATABASE}'"])
        if exists.stdout.strip() != "1":
            self._check([*psql, f"create database {DATABASE}"], f"creating database {DATABASE}")

    def stop(self) -> bool:
        """Stop the cluster if it runs; returns whether it was running."""
        if not self.is_running():
            return False
        self._check(
            [str(self.bindir / "pg_ctl"), "stop", "-w", "-m", "fast", "-D", str(self.data_dir)],
            "stopping PostgreSQL",
        )
        return True


def connection_env() -> dict[str, str]:
    """libpq variables for this run: the caller's server, or the started local one."""
    if external_server_configured():
        return {}
    return LocalServer.discover().start().env()
