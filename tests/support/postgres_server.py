"""A throwaway PostgreSQL server for tests and benchmarks: initdb into a fresh temporary
directory, ``postgres`` on a free 127.0.0.1 port, trust authentication for one role, removed
afterwards. PostgreSQL refuses to run as root: as root the server runs as the ``postgres``
system user (the Debian package creates it) through ``runuser``.

``make setup`` / ``.ci/run`` install PostgreSQL with apt-get when they run as root; where it
is missing ``PostgresUnavailable`` says why, and the tests skip with that reason.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROLE = "atsource"


class PostgresUnavailable(Exception):
    pass


def _bindir() -> Path:
    found = shutil.which("pg_ctl") or shutil.which("initdb")
    if found:
        return Path(os.path.realpath(found)).parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[4]))
    if versions:
        return Path(versions[-1])
    raise PostgresUnavailable("PostgreSQL is not installed (apt-get install postgresql)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_user() -> tuple[list[str], str | None]:
    """The command prefix that runs the server as a non-root user, and that user."""
    if os.geteuid() != 0:
        return [], None
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise PostgresUnavailable("running as root and there is no postgres user") from None
    runuser = shutil.which("runuser")
    if runuser is None:
        raise PostgresUnavailable("running as root and runuser is missing")
    return [runuser, "-u", "postgres", "--"], "postgres"


@contextmanager
def postgres_server(parent: Path | None = None, *, durable: bool = False) -> Iterator[str]:
    """Start a server; yield its URL (``postgresql://atsource@127.0.0.1:PORT/postgres``).
    ``durable=False`` turns fsync off (tests); a benchmark passes True."""
    bindir = _bindir()
    prefix, user = _as_user()
    # Not under pytest's tmp_path: that is private to root, and the server's user must own
    # its directory.
    root = Path(tempfile.mkdtemp(prefix="atsource-pg-", dir=parent if user is None else None))
    data = root / "data"
    try:
        if user is not None:
            pw = pwd.getpwnam(user)
            os.chown(root, pw.pw_uid, pw.pw_gid)
        init = subprocess.run(
            [*prefix, str(bindir / "initdb"), "-D", str(data), "-U", ROLE, "--auth=trust",
             "-E", "UTF8", "--no-instructions"],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        if init.returncode != 0:
            raise PostgresUnavailable(f"initdb failed: {init.stderr.strip()[-300:]}")
        port = _free_port()
        opts = [
            "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={root}",
            "-c", "max_connections=40", "-c", "shared_buffers=32MB",
        ]  # fmt: skip
        if not durable:
            opts += ["-c", "fsync=off", "-c", "synchronous_commit=off"]
        log = open(root / "server.log", "wb")  # noqa: SIM115 (closed below)
        proc = subprocess.Popen(
            [*prefix, str(bindir / "postgres"), "-D", str(data), "-p", str(port), *opts],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            url = f"postgresql://{ROLE}@127.0.0.1:{port}/postgres"
            _wait_ready(url, proc, root / "server.log")
            yield url
        finally:
            # SIGINT: the "fast" shutdown (sessions are cut, no waiting for clients).
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            log.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    import psycopg

    deadline = time.monotonic() + 60
    while True:
        try:
            psycopg.connect(url, connect_timeout=2).close()
            return
        except psycopg.OperationalError:
            if proc.poll() is not None or time.monotonic() > deadline:
                text = log.read_text(errors="replace").strip()[-400:]
                raise PostgresUnavailable(f"postgres did not start: {text}") from None
            time.sleep(0.1)


def fresh_database(url: str, name: str) -> str:
    """Create an empty database on the server of ``url``; its URL."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{name}"')
        c.execute(f'CREATE DATABASE "{name}"')
    return url.rsplit("/", 1)[0] + "/" + name
