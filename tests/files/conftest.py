"""A real clamd with a one-signature database (EICAR), when Debian's clamav-daemon is here."""

import hashlib
import shutil
import socket
import subprocess
import time

import pytest

# The EICAR test file: harmless, and matched by every antivirus as a test signature.
EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"


def pytest_report_header(config):
    found = shutil.which("clamd") or shutil.which("clamd", path="/usr/sbin")
    return [f"clamd: {found or 'not installed (apt-get install clamav-daemon): malware scan tests skipped'}"]


@pytest.fixture(scope="session")
def clamd_socket(tmp_path_factory):
    binary = shutil.which("clamd") or shutil.which("clamd", path="/usr/sbin")
    if binary is None:
        pytest.skip("clamd is not installed (apt-get install clamav-daemon): scanning not tested")
    home = tmp_path_factory.mktemp("clamd")
    (home / "db").mkdir()
    (home / "db" / "eicar.hdb").write_text(
        f"{hashlib.md5(EICAR).hexdigest()}:{len(EICAR)}:Eicar-Test-Signature\n"
    )
    path = home / "clamd.sock"
    (home / "clamd.conf").write_text(
        f"LocalSocket {path}\nDatabaseDirectory {home / 'db'}\nForeground yes\nLogFile {home / 'clamd.log'}\n"
    )
    process = subprocess.Popen([binary, "-c", str(home / "clamd.conf")], stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with socket.socket(socket.AF_UNIX) as probe:
                    probe.connect(str(path))
                    probe.sendall(b"zPING\0")
                    if probe.recv(16).startswith(b"PONG"):
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"clamd did not start: {(home / 'clamd.log').read_text()[-2000:]}")
            time.sleep(0.1)
        yield str(path)
    finally:
        process.terminate()
        process.wait(10)
