"""A throwaway PostgreSQL cluster for tests: ``initdb`` + ``pg_ctl`` in a temporary directory.

The cluster listens on 127.0.0.1 on a free port with TLS on (a self-signed certificate made
here), so the receiver's default ``sslmode=require`` is exercised as in production; password
authentication (SCRAM) for TCP, the Unix socket in the temporary directory. As root the server
runs as the ``postgres`` user (PostgreSQL refuses to run as root). Binaries come from ``PATH``
or Debian's ``/usr/lib/postgresql/<version>/bin`` (package ``postgresql``, which ``.ci/run``
installs). Nothing here is a mock: every test talks to a real server.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

SUPERUSER = "secure_export_test"


def find_bindir() -> Path | None:
    """The directory holding ``initdb``, ``pg_ctl`` and ``postgres``, or None when absent."""
    candidates: list[Path] = []
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(os.path.realpath(on_path)).parent)
    debian = Path("/usr/lib/postgresql")
    if debian.is_dir():
        versions = sorted((p for p in debian.iterdir() if p.name.isdigit()), key=lambda p: int(p.name), reverse=True)
        candidates += [p / "bin" for p in versions]
    for directory in candidates:
        if all((directory / tool).is_file() for tool in ("initdb", "pg_ctl", "postgres")):
            return directory
    return None


def unavailable_reason() -> str | None:
    """Why a test cluster cannot be started here, or None when it can."""
    if find_bindir() is None:
        return (
            "PostgreSQL server binaries (initdb, pg_ctl) not found on PATH or in /usr/lib/postgresql/*/bin; "
            "install Debian's `postgresql` package (apt-get install -y postgresql; .ci/run does this)"
        )
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root but there is no `postgres` user to run the server as (PostgreSQL refuses root)"
    return None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _self_signed(directory: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "server.crt", directory / "server.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    key_path.chmod(0o600)
    return cert_path, key_path


@dataclass
class PostgresCluster:
    """One running test cluster; :meth:`url` gives a libpq URL for a database in it."""

    bindir: Path
    root: Path
    port: int = 0
    password: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    _user: str | None = None

    @property
    def datadir(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root / "socket"

    def _run(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.bindir / args[0]), *args[1:]],
            user=self._user,
            capture_output=True,
            text=True,
            check=check,
            timeout=timeout,
            cwd=self.root,
            env={**os.environ, "LC_ALL": "C.UTF-8"},
        )

    def init(self) -> None:
        self._user = "postgres" if os.geteuid() == 0 else None
        self.socket_dir.mkdir()
        pwfile = self.root / "pwfile"
        pwfile.write_text(self.password + "\n")
        cert, key = _self_signed(self.root)
        if self._user is not None:
            entry = pwd.getpwnam(self._user)
            for path in (self.root, self.socket_dir, pwfile, cert, key):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        self._run(
            "initdb",
            "-D",
            str(self.datadir),
            "-U",
            SUPERUSER,
            f"--pwfile={pwfile}",
            "--auth-host=scram-sha-256",
            "--auth-local=trust",
            "-E",
            "UTF8",
            "--no-sync",
        )
        pwfile.unlink()
        with (self.datadir / "postgresql.conf").open("a") as conf:
            conf.write(
                "\n# secure-export tests\n"
                "listen_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{self.socket_dir}'\n"
                "ssl = on\n"
                f"ssl_cert_file = '{cert}'\n"
                f"ssl_key_file = '{key}'\n"
                "max_connections = 200\n"
                "shared_buffers = 32MB\n"
                "log_min_messages = warning\n"
            )

    def start(self, attempts: int = 5) -> None:
        """Start the server (on a new free port the first time, on the same port afterwards)."""
        last = ""
        for _ in range(attempts):
            if not self.port:
                self.port = free_port()
            result = self._run(
                "pg_ctl",
                "-D",
                str(self.datadir),
                "-l",
                str(self.root / "server.log"),
                "-w",
                "-t",
                "60",
                "-o",
                f"-p {self.port}",
                "start",
                check=False,
            )
            if result.returncode == 0:
                return
            last = result.stdout + result.stderr + self.log_tail()
            self.port = 0 if "already in use" in last else self.port
        raise RuntimeError(f"the test PostgreSQL server did not start: {last}")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast``: clients are cut off, committed data stays; ``immediate``: a crash)."""
        self._run("pg_ctl", "-D", str(self.datadir), "-m", mode, "-w", "stop", check=False)

    def log_tail(self, lines: int = 20) -> str:
        log = self.root / "server.log"
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) if log.exists() else ""

    def url(self, database: str = "postgres", *, password: bool = True, **params: str) -> str:
        """A libpq URL for ``database`` over TCP (TLS: the default ``sslmode=require`` applies)."""
        secret = f":{quote(self.password, safe='')}" if password else ""
        query = "&".join(f"{k}={v}" for k, v in params.items())
        return f"postgresql://{SUPERUSER}{secret}@127.0.0.1:{self.port}/{database}" + (f"?{query}" if query else "")

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run ``sql`` through the Unix socket as the superuser; returns psql's output."""
        psql = self.bindir / "psql" if (self.bindir / "psql").is_file() else Path(shutil.which("psql") or "psql")
        result = subprocess.run(
            [
                str(psql),
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                str(self.socket_dir),
                "-p",
                str(self.port),
                "-U",
                SUPERUSER,
                "-d",
                database,
                "-c",
                sql,
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        return result.stdout.strip()

    def create_database(self, prefix: str = "t") -> str:
        """A new empty database; returns its name."""
        name = f"{prefix}_{secrets.token_hex(6)}"
        self.psql(f'CREATE DATABASE "{name}"')
        return name

    def set_password(self, password: str) -> None:
        """Change the superuser's password (a stand-in for a rotated Entra access token)."""
        escaped = password.replace("'", "''")
        self.psql(f"ALTER ROLE {SUPERUSER} PASSWORD '{escaped}'")
        self.password = password


@contextlib.contextmanager
def running_cluster() -> Iterator[PostgresCluster]:
    """Start a cluster in a fresh temporary directory; always stop and remove it afterwards."""
    bindir = find_bindir()
    if bindir is None:
        raise RuntimeError(unavailable_reason() or "no PostgreSQL binaries")
    root = Path(tempfile.mkdtemp(prefix="secure-export-pg-"))
    cluster = PostgresCluster(bindir=bindir, root=root)
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        with contextlib.suppress(Exception):
            cluster.stop("immediate")
        deadline = time.monotonic() + 10
        while (root / "data" / "postmaster.pid").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        shutil.rmtree(root, ignore_errors=True)
