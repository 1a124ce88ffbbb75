"""A local Cloud Storage emulator process for tests (no mock of the client)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class GcsEmulator:
    """``gcp-storage-emulator`` on a free loopback port with one bucket."""

    def __init__(self, bucket: str):
        self.bucket = bucket
        self.port = free_port()
        self.host = f"http://127.0.0.1:{self.port}"
        exe = shutil.which("gcp-storage-emulator") or str(Path(sys.executable).parent / "gcp-storage-emulator")
        self.process = subprocess.Popen(
            [exe, "start", "--host=127.0.0.1", f"--port={self.port}", "--in-memory",
             f"--default-bucket={bucket}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("Cloud Storage emulator did not start")

    def url(self, path: str) -> str:
        return f"gs://{self.bucket}/{path.lstrip('/')}"

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=10)


def upload(data: bytes, url: str):
    """Stores ``data`` as is: Beam would otherwise compress it again by the name's suffix (.gz, .zst)."""
    from apache_beam.io.filesystem import CompressionTypes
    from apache_beam.io.filesystems import FileSystems

    with FileSystems.create(url, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        f.write(data)
