"""Build receiver/Dockerfile with no registry and no Docker engine, and run its image (test_image.py).

The steps (docs/image.md explains them for people building behind a proxy):

1. a Debian bookworm root file system from ``debootstrap --variant=minbase`` with Python, cached
   under ``~/.cache/secure-export/image-base/<key of its inputs>`` so that re-runs skip it;
2. the host pip's index, proxy and CA settings written into it (``/etc/pip.conf`` and the CA
   bundle), so that ``pip install`` inside the build reaches the same index the host does;
3. ``podman import`` of it as the base, ``podman build --isolation=chroot`` with ``PYTHON_IMAGE``
   pointing at it;
4. ``podman create`` + ``podman mount``: the image's ENTRYPOINT/CMD then run under
   ``chroot --userspec`` (podman cannot start containers on these machines).
"""

from __future__ import annotations

import configparser
import contextlib
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tests.support.paths import REPO_ROOT

DOCKERFILE = REPO_ROOT / "receiver" / "Dockerfile"

SUITE = "bookworm"
VARIANT = "minbase"
INCLUDE = ("python3", "python3-venv", "python3-pip", "ca-certificates")
DEFAULT_MIRROR = "http://deb.debian.org/debian"
BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
"""The PATH official Debian-based images set (a bare import has none)."""
PIP_CA_IN_BASE = "/etc/ssl/certs/secure-export-pip-ca.pem"
TOOLS = ("podman", "debootstrap", "chroot", "tar")


class ImageBuildError(RuntimeError):
    """A step failed; the message ends with the tail of the step's output."""


def missing_prerequisite() -> str | None:
    """Why the image cannot be built and run here, or None when it can."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "building and running the image needs root (podman storage, debootstrap, chroot)"
    absent = [tool for tool in TOOLS if shutil.which(tool) is None]
    if absent:
        return f"{', '.join(absent)} not installed (apt-get install podman debootstrap; .ci/run does it in CI)"
    return None


def run(argv: Sequence[str], *, timeout: float, log: Path, stdin: Any = None) -> str:
    """Run a step, appending its output to ``log``; its stdout, or :class:`ImageBuildError`."""
    with log.open("a") as out:
        out.write(f"\n$ {' '.join(argv)}\n")
    result = subprocess.run(list(argv), stdin=stdin, capture_output=True, text=True, timeout=timeout, check=False)
    with log.open("a") as out:
        out.write(result.stdout + result.stderr)
    if result.returncode != 0:
        tail = (result.stdout + result.stderr)[-3000:]
        raise ImageBuildError(
            f"{argv[0]} {argv[1] if len(argv) > 1 else ''} failed (exit {result.returncode}):\n{tail}"
        )
    return result.stdout


# -- the Debian base ----------------------------------------------------------------------------


def debian_mirror() -> str:
    """The Debian mirror the host's apt uses for ``bookworm`` (``SECURE_EXPORT_DEBIAN_MIRROR`` wins)."""
    chosen = os.environ.get("SECURE_EXPORT_DEBIAN_MIRROR", "").strip()
    if chosen:
        return chosen
    sources = Path("/etc/apt/sources.list.d")
    for path in sorted(sources.glob("*.sources")) if sources.is_dir() else []:
        for paragraph in path.read_text(errors="replace").split("\n\n"):
            fields = dict(
                (name.strip().lower(), value.strip())
                for name, sep, value in (line.partition(":") for line in paragraph.splitlines())
                if sep and not name.startswith("#")
            )
            if "deb" in fields.get("types", "").split() and SUITE in fields.get("suites", "").split():
                return fields["uris"].split()[0]
    sources_list = Path("/etc/apt/sources.list")
    if sources_list.is_file():
        for line in sources_list.read_text(errors="replace").splitlines():
            words = re.sub(r"\[[^]]*\]", "", line).split()
            if len(words) >= 3 and words[0] == "deb" and words[2] == SUITE:
                return words[1]
    return DEFAULT_MIRROR


def cache_root() -> Path:
    """Where base root file systems are kept between runs (CI starts without it)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "secure-export" / "image-base"


def base_rootfs(log: Path) -> tuple[Path, bool]:
    """A minbase bookworm root file system with Python, and whether it came from the cache."""
    mirror = debian_mirror()
    inputs = {"suite": SUITE, "variant": VARIANT, "include": INCLUDE, "mirror": mirror, "arch": os.uname().machine}
    key = hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:16]
    root = cache_root()
    final = root / key
    if (final / "usr" / "bin" / "python3").exists():
        return final, True
    root.mkdir(parents=True, exist_ok=True)
    partial = root / f"{key}.partial-{os.getpid()}"
    try:
        run(
            [
                "debootstrap",
                f"--variant={VARIANT}",
                f"--include={','.join(INCLUDE)}",
                SUITE,
                str(partial),
                mirror,
            ],
            timeout=1200,
            log=log,
        )
        (root / f"{key}.json").write_text(json.dumps(inputs, indent=2) + "\n")
        try:
            partial.rename(final)
        except OSError:  # another run finished the same base first
            remove_tree(partial)
    except BaseException:
        remove_tree(partial)
        raise
    return final, False


def remove_tree(path: Path) -> None:
    """Delete ``path``, unmounting first whatever a failed debootstrap left mounted inside it."""
    if not path.exists():
        return
    inside = str(path.resolve()) + "/"
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines() if len(line.split()) > 1]
    for mount in sorted((m for m in mounts if m.startswith(inside)), key=len, reverse=True):
        subprocess.run(["umount", "-l", mount], capture_output=True, check=False, timeout=60)
    shutil.rmtree(path, ignore_errors=True)


# -- pip settings for the build -----------------------------------------------------------------


@dataclass
class PipSettings:
    """What pip inside the build needs to reach the host's package index."""

    index_url: str | None = None
    extra_index_urls: list[str] = field(default_factory=list)
    trusted_hosts: list[str] = field(default_factory=list)
    cert: Path | None = None
    proxy: str | None = None
    timeout: str | None = None
    dropped: list[str] = field(default_factory=list)
    """Host settings that cannot work inside the build (local files), left out on purpose."""

    def pip_conf(self) -> str:
        """The ``/etc/pip.conf`` of the base image."""
        config = configparser.ConfigParser(interpolation=None)
        config["global"] = {}
        section = config["global"]
        if self.index_url:
            section["index-url"] = self.index_url
        if self.extra_index_urls:
            section["extra-index-url"] = " ".join(self.extra_index_urls)
        if self.trusted_hosts:
            section["trusted-host"] = " ".join(self.trusted_hosts)
        if self.cert is not None:
            section["cert"] = PIP_CA_IN_BASE
        if self.proxy:
            section["proxy"] = self.proxy
        if self.timeout:
            section["timeout"] = self.timeout
        text = io.StringIO()
        config.write(text)
        header = "# Written by tests/support/image_build.py from the host's pip settings (docs/image.md).\n"
        return header + text.getvalue().strip() + "\n"


def _reachable_in_build(url: str) -> bool:
    return urlsplit(url).scheme in ("http", "https")


def _has_credentials(url: str) -> bool:
    parts = urlsplit(url)
    return bool(parts.username or parts.password)


def host_pip_settings(python: str = sys.executable) -> PipSettings:
    """The host pip's effective settings (``pip config list``: files, then ``PIP_*`` variables).

    Raises :class:`ImageBuildError` when an index or proxy URL carries credentials: written into
    the base they would end up in the image's layers (docs/image.md: use a build secret instead).
    """
    listing = subprocess.run(
        [python, "-m", "pip", "config", "list"], capture_output=True, text=True, timeout=120, check=False
    ).stdout
    from_files: dict[str, str] = {}
    from_env: dict[str, str] = {}
    for line in listing.splitlines():
        name, sep, quoted = line.partition("=")
        if not sep:
            continue
        value = quoted.strip().strip("'\"")
        origin, _, option = name.rpartition(".")
        (from_env if origin.startswith(":env:") else from_files)[option.strip()] = value
    options = {**from_files, **from_env}  # pip: environment variables win over files

    settings = PipSettings()
    indexes = [options["index-url"]] if options.get("index-url") else []
    extras = options.get("extra-index-url", "").split()
    for url in indexes + extras:
        if not _reachable_in_build(url):
            settings.dropped.append(url)
    kept_index = [url for url in indexes if _reachable_in_build(url)]
    settings.index_url = kept_index[0] if kept_index else None
    settings.extra_index_urls = [url for url in extras if _reachable_in_build(url)]
    settings.trusted_hosts = options.get("trusted-host", "").split()
    settings.proxy = options.get("proxy") or None
    settings.timeout = options.get("timeout") or options.get("default-timeout") or None
    for name in ("find-links", "constraint", "requirement"):
        if options.get(name):
            settings.dropped.append(f"{name}={options[name]}")
    cert = options.get("cert") or os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("SSL_CERT_FILE")
    if cert and Path(cert).is_file():
        settings.cert = Path(cert)
    secret = [
        url
        for url in [settings.index_url or "", *settings.extra_index_urls, settings.proxy or ""]
        if url and _has_credentials(url)
    ]
    if secret:
        raise ImageBuildError(
            "the host's pip index or proxy URL carries credentials; they would be baked into the base "
            "image's layers. Build with a secret instead (docs/image.md)"
        )
    return settings


def write_pip_settings(rootfs: Path, settings: PipSettings) -> None:
    """Write ``/etc/pip.conf`` (and the CA bundle it names) into the base root file system."""
    (rootfs / "etc" / "pip.conf").write_text(settings.pip_conf())
    ca = rootfs / PIP_CA_IN_BASE.lstrip("/")
    if settings.cert is not None:
        ca.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(settings.cert, ca)
    elif ca.exists():
        ca.unlink()


# -- podman ---------------------------------------------------------------------------------------


def import_base(rootfs: Path, tag: str, log: Path) -> None:
    """``podman import`` the root file system as ``tag`` (with the PATH official images set)."""
    with subprocess.Popen(
        ["tar", "-C", str(rootfs), "--numeric-owner", "-c", "."], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as tar:
        try:
            run(
                ["podman", "import", "--change", f"ENV PATH={BASE_PATH}", "-", tag],
                timeout=600,
                log=log,
                stdin=tar.stdout,
            )
        finally:
            assert tar.stdout is not None
            tar.stdout.close()
            tar_error = tar.stderr.read().decode(errors="replace") if tar.stderr else ""
            tar.wait(60)
    if tar.returncode != 0:
        raise ImageBuildError(f"tar of the base root file system failed (exit {tar.returncode}): {tar_error[-2000:]}")


def build_image(base_tag: str, tag: str, log: Path) -> None:
    """``podman build`` of receiver/Dockerfile on ``base_tag``; no intermediate images are kept."""
    run(
        [
            "podman",
            "build",
            "--isolation=chroot",
            "--layers=false",
            "--format=docker",  # keeps HEALTHCHECK, which the OCI format drops
            "--build-arg",
            f"PYTHON_IMAGE={base_tag}",
            "-f",
            str(DOCKERFILE),
            "-t",
            tag,
            str(REPO_ROOT),
        ],
        timeout=1800,
        log=log,
    )


def image_config(tag: str, log: Path) -> dict[str, Any]:
    """The image's ``Config`` (User, Env, Entrypoint, Cmd, WorkingDir, Healthcheck)."""
    [inspected] = json.loads(run(["podman", "image", "inspect", tag], timeout=120, log=log))
    config = dict(inspected["Config"])
    # podman reports a docker-format image's HEALTHCHECK beside Config, not in it.
    healthcheck = config.get("Healthcheck") or inspected.get("Healthcheck")
    if healthcheck:
        config["Healthcheck"] = healthcheck
    return config


@dataclass(frozen=True)
class Container:
    """A created (never started) container, its root file system mounted."""

    rootfs: Path
    written: Path | None
    """The container's own layer (overlay's upper directory): every file written since creation."""


@contextlib.contextmanager
def mounted_container(tag: str, log: Path) -> Iterator[Container]:
    """A created container of ``tag``, mounted; unmounted and removed after."""
    name = f"{tag.rsplit(':', 1)[-1]}-ctr"
    run(["podman", "create", "--name", name, tag], timeout=300, log=log)
    try:
        mount = Path(run(["podman", "mount", name], timeout=120, log=log).strip())
        try:
            [inspected] = json.loads(run(["podman", "container", "inspect", name], timeout=120, log=log))
            upper = (inspected.get("GraphDriver") or {}).get("Data", {}).get("UpperDir")
            yield Container(mount, Path(upper) if upper else None)
        finally:
            subprocess.run(["podman", "umount", name], capture_output=True, timeout=120, check=False)
    finally:
        subprocess.run(["podman", "rm", "--force", name], capture_output=True, timeout=120, check=False)


def remove_images(*tags: str) -> None:
    """``podman rmi`` each tag that exists (cleanup never fails the test)."""
    for tag in tags:
        subprocess.run(["podman", "rmi", "--force", tag], capture_output=True, timeout=300, check=False)


def image_exists(tag: str) -> bool:
    """Whether podman still has ``tag``."""
    return (
        subprocess.run(["podman", "image", "exists", tag], capture_output=True, timeout=60, check=False).returncode == 0
    )


# -- running the image's own command ------------------------------------------------------------


def user_ids(user: str, rootfs: Path) -> tuple[int, int]:
    """``uid:gid`` of the image's ``USER`` (numeric, or a name from the image's /etc/passwd)."""
    name, _, group = user.partition(":")
    passwd = {
        fields[0]: fields
        for fields in (line.split(":") for line in (rootfs / "etc" / "passwd").read_text().splitlines())
        if len(fields) > 3
    }
    uid = int(name) if name.isdigit() else int(passwd[name][2])
    if group:
        groups = {
            fields[0]: fields
            for fields in (line.split(":") for line in (rootfs / "etc" / "group").read_text().splitlines())
            if len(fields) > 2
        }
        gid = int(group) if group.isdigit() else int(groups[group][2])
    else:
        by_uid = {int(fields[2]): fields for fields in passwd.values()}
        gid = int(by_uid[uid][3]) if uid in by_uid else uid
    return uid, gid


def chroot_argv(
    rootfs: Path, uid: int, gid: int, workdir: str, env: Mapping[str, str], argv: Sequence[str]
) -> list[str]:
    """Run ``argv`` in ``rootfs`` as ``uid:gid`` in ``workdir`` with exactly ``env``, as a container would."""
    return [
        "chroot",
        f"--userspec={uid}:{gid}",
        str(rootfs),
        "/usr/bin/env",
        "-i",
        f"--chdir={workdir or '/'}",
        *(f"{name}={value}" for name, value in env.items()),
        *argv,
    ]


def image_env(config: Mapping[str, Any], **extra: str) -> dict[str, str]:
    """The image's ``ENV`` (as ``KEY=value`` list) plus ``extra`` (what ``-e`` would add)."""
    env = dict(item.partition("=")[::2] for item in config.get("Env") or [])
    env.update(extra)
    return env


def with_listen_address(command: Sequence[str], host: str, port: int) -> list[str]:
    """The command with its ``--host``/``--port`` values replaced (what a port mapping does)."""
    result = list(command)
    for option, value in (("--host", host), ("--port", str(port))):
        if option not in result:
            raise ImageBuildError(f"the image's command {command} has no {option}")
        result[result.index(option) + 1] = value
    return result


class Stopwatch:
    """Named durations of the steps, for the report line."""

    def __init__(self) -> None:
        self.steps: dict[str, float] = {}

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        started = time.monotonic()
        try:
            yield
        finally:
            self.steps[name] = time.monotonic() - started

    def summary(self) -> str:
        return ", ".join(f"{name} {seconds:.1f} s" for name, seconds in self.steps.items())
