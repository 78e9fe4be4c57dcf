"""receiver/Dockerfile built with podman and its image run: what a container platform would do.

No registry and no Docker engine here: the base is made with debootstrap, podman builds with
``--isolation=chroot``, and the image's own ENTRYPOINT/CMD runs under ``chroot --userspec`` in the
mounted container (podman cannot start containers on these machines); tests/support/image_build.py
has the steps. Needs root, podman and debootstrap (``.ci/run`` installs them in CI); elsewhere it
skips and says why. Select it alone with ``pytest -m image``.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from receiver.demo.local_issuer import LocalIssuer
from tests.support import image_build
from tests.support.alerts import alert_body
from tests.support.prerequisites import missing

pytestmark = pytest.mark.image


@dataclass
class BuiltImage:
    tag: str
    config: dict[str, Any]
    rootfs: Path
    """The mounted root file system of a created container of the image."""
    written: Path | None
    """The container's own layer: what running the image wrote (None on a storage driver without one)."""
    uid: int
    gid: int
    log: Path

    def run(
        self, argv: list[str], env: dict[str, str] | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """``argv`` inside the image as its user, with its environment (plus ``env``)."""
        command = image_build.chroot_argv(
            self.rootfs,
            self.uid,
            self.gid,
            self.config.get("WorkingDir") or "/",
            image_build.image_env(self.config, **(env or {})),
            argv,
        )
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture(scope="module")
def image(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BuiltImage]:
    reason = image_build.missing_prerequisite()
    if reason is not None:
        missing(f"container image not built: {reason}")
    work = tmp_path_factory.mktemp("image")
    log = work / "build.log"
    run_id = uuid.uuid4().hex[:10]
    base_tag = f"localhost/secure-export-test-base:{run_id}"
    tag = f"localhost/secure-export-receiver-test:{run_id}"
    watch = image_build.Stopwatch()
    try:
        with watch.step("pip settings"):
            settings = image_build.host_pip_settings()
        with watch.step("debootstrap base"):
            rootfs, cached = image_build.base_rootfs(log)
        if cached:
            watch.steps["debootstrap base (cached)"] = watch.steps.pop("debootstrap base")
        image_build.write_pip_settings(rootfs, settings)
        with watch.step("podman import"):
            image_build.import_base(rootfs, base_tag, log)
        with watch.step("podman build"):
            image_build.build_image(base_tag, tag, log)
        config = image_build.image_config(tag, log)
        with watch.step("create+mount"), image_build.mounted_container(tag, log) as container:
            uid, gid = image_build.user_ids(config.get("User") or "0", container.rootfs)
            _report(request, f"[image] {watch.summary()} (log: {log})")
            yield BuiltImage(tag, config, container.rootfs, container.written, uid, gid, log)
    except image_build.ImageBuildError as error:
        pytest.fail(f"{error}\n(full log: {log})", pytrace=False)
    finally:
        image_build.remove_images(tag, base_tag)


def _report(request: pytest.FixtureRequest, line: str) -> None:
    """Print ``line`` in the test run's output (the step timings), past output capturing."""
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is None or capture is None:
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line("")
        reporter.write_line(line)


def _listening_url(log: Path) -> str | None:
    """The URL of the receiver's ``"event": "listening"`` log line, once it has logged it."""
    for line in log.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("event") == "listening":
            return str(entry["url"])
    return None


@dataclass
class Running:
    url: str
    port: int
    process: subprocess.Popen[bytes]
    issuer: LocalIssuer
    stderr: Path


@pytest.fixture(scope="module")
def running(image: BuiltImage, issuer: LocalIssuer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """The image's ENTRYPOINT + CMD, on a loopback port the OS picks instead of 0.0.0.0:8080."""
    command = [*(image.config.get("Entrypoint") or []), *(image.config.get("Cmd") or [])]
    argv = image_build.chroot_argv(
        image.rootfs,
        image.uid,
        image.gid,
        image.config.get("WorkingDir") or "/",
        image_build.image_env(
            image.config,
            SECURE_EXPORT_TENANT_ID=issuer.tenant_id,
            SECURE_EXPORT_AUDIENCES=",".join(issuer.audiences),
            SECURE_EXPORT_JWKS_URI=issuer.jwks_uri,
        ),
        image_build.with_listen_address(command, "127.0.0.1", 0),
    )
    stderr = tmp_path_factory.mktemp("image-run") / "receiver.log"
    with stderr.open("wb") as sink:
        process = subprocess.Popen(argv, stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while (url := _listening_url(stderr)) is None:
            assert process.poll() is None, (
                f"the image's command exited {process.returncode}:\n{stderr.read_text()[-3000:]}"
            )
            assert time.monotonic() < deadline, f"the image's receiver did not start:\n{stderr.read_text()[-3000:]}"
            time.sleep(0.1)
        assert httpx.get(f"{url}/healthz", timeout=5).status_code == 200
        yield Running(url, int(url.rsplit(":", 1)[1]), process, issuer, stderr)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


def test_the_image_declares_a_non_root_user_and_the_serve_command(image: BuiltImage) -> None:
    assert image.uid != 0 and image.gid != 0, image.config.get("User")
    assert image.config["Entrypoint"] == ["secure-export"]
    assert image.config["Cmd"][0] == "serve"
    assert image.config["WorkingDir"] == "/data"
    assert "/data" in (image.config.get("Volumes") or {})


def test_the_receiver_runs_as_the_images_user(image: BuiltImage, running: Running) -> None:
    status = Path(f"/proc/{running.process.pid}/status").read_text()
    ids = {line.split(":")[0]: line.split()[1:] for line in status.splitlines() if line.startswith(("Uid:", "Gid:"))}
    assert ids["Uid"] == [str(image.uid)] * 4, status
    assert ids["Gid"] == [str(image.gid)] * 4, status
    cmdline = Path(f"/proc/{running.process.pid}/cmdline").read_bytes().split(b"\0")
    assert any(part.endswith(b"secure-export") for part in cmdline), cmdline


def test_ready_accepts_an_authenticated_alert_and_refuses_no_token(running: Running) -> None:
    deadline = time.monotonic() + 30
    while (ready := httpx.get(f"{running.url}/readyz", timeout=5)).status_code != 200:
        assert time.monotonic() < deadline, ready.text
        time.sleep(0.1)
    body = json.dumps(alert_body("image-1")).encode()
    accepted = httpx.post(
        f"{running.url}/api/alerts",
        content=body,
        headers={"Authorization": f"Bearer {running.issuer.mint()}", "Content-Type": "application/json"},
        timeout=10,
    )
    assert accepted.status_code == 202, accepted.text
    assert accepted.json()["status"] == "accepted"
    refused = httpx.post(
        f"{running.url}/api/alerts", content=body, headers={"Content-Type": "application/json"}, timeout=10
    )
    assert refused.status_code == 401, refused.text
    assert refused.headers["www-authenticate"] == 'Bearer error="invalid_token"'


def test_the_database_is_written_under_data_by_the_user(image: BuiltImage, running: Running) -> None:
    db = image.rootfs / "data" / "secure-export.db"
    deadline = time.monotonic() + 30
    listing: list[dict[str, Any]] = []
    while not listing:
        # The image's own CLI, as its user, reads the work item the accepted alert became.
        result = image.run(["secure-export", "work-items", "--json"])
        assert result.returncode == 0, result.stderr
        listing = json.loads(result.stdout)
        assert listing or time.monotonic() < deadline, "the accepted alert never became a work item"
        if not listing:
            time.sleep(0.2)
    assert db.is_file()
    assert (db.stat().st_uid, db.stat().st_gid) == (image.uid, image.gid)
    assert "image-1" in json.dumps(listing)
    if image.written is None:
        pytest.skip("podman's storage driver keeps no separate container layer; the rest was checked")
    # The container's own layer holds everything it wrote: only the data directory.
    written = sorted(str(path.relative_to(image.written)) for path in image.written.rglob("*") if not path.is_dir())
    assert written and all(path.startswith("data/") for path in written), written


def test_no_pulumi_is_installed_in_the_image(image: BuiltImage) -> None:
    probe = image.run(
        [
            "python",
            "-c",
            "import importlib.util, sys; "
            "sys.exit(0 if importlib.util.find_spec('pulumi') is None and importlib.util.find_spec('receiver') else 1)",
        ]
    )
    assert probe.returncode == 0, probe.stdout + probe.stderr
    site = list((image.rootfs / "opt" / "venv" / "lib").glob("python3*/site-packages"))
    assert site, "no virtual environment at /opt/venv"
    assert not [path.name for path in site[0].iterdir() if path.name.lower().startswith("pulumi")]
    assert not (image.rootfs / "usr" / "local" / "bin" / "pulumi").exists()


def test_the_images_healthcheck_passes_against_the_running_receiver(image: BuiltImage, running: Running) -> None:
    healthcheck = image.config.get("Healthcheck") or {}
    test = healthcheck.get("Test") or []
    assert test[:1] == ["CMD"], healthcheck
    argv = [arg.replace(":8080", f":{running.port}") for arg in test[1:]]
    assert image.run(argv).returncode == 0


def test_sigterm_stops_the_receiver_cleanly(running: Running) -> None:
    running.process.send_signal(signal.SIGTERM)
    assert running.process.wait(30) == 0, running.stderr.read_text()[-3000:]
