"""The Dagster UI as the README starts it (`sidflow ui`), run in its own process group for the browser test."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

LOOPBACK = "127.0.0.1"
NANOBIND_NOISE = re.compile(r"^(nanobind: | - leaked |See https://nanobind)")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return probe.getsockname()[1]


def sidflow_ui_command(config: Path, home: Path, port: int) -> list[str]:
    """The README's `sidflow ui`, through the venv's entry point (or the module when it is not installed).
    No --host: the test checks the default binds to loopback."""
    sidflow = Path(sys.executable).with_name("sidflow")
    entry = [str(sidflow)] if sidflow.exists() else [sys.executable, "-m", "orchestration.cli"]
    return [*entry, "ui", "--config", str(config), "--home", str(home), "--port", str(port)]


class DagsterUI:
    """`dagster dev` ignores SIGINT/SIGTERM when started in the background of a non-interactive shell and leaves
    its webserver, daemon and code servers behind, so it gets a session (process group) of its own and
    `stop` signals the whole group."""

    def __init__(self, command: list[str], log_path: Path, cwd: Path):
        self.port = int(command[command.index("--port") + 1])
        self.url = f"http://{LOOPBACK}:{self.port}"
        self.log_path = log_path
        env = dict(os.environ, DAGSTER_DISABLE_TELEMETRY="1", DVC_NO_ANALYTICS="1")
        with open(log_path, "wb") as log:
            self.process = subprocess.Popen(command, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        # DuckDB's bindings print a nanobind leak report of ~60 lines whenever a Dagster process exits,
        # which would push the server's own messages out of the tail.
        kept = [line for line in text.splitlines() if not NANOBIND_NOISE.match(line)]
        return "\n".join(kept[-lines:])

    def wait_until_serving(self, timeout_s: float) -> None:
        """Poll /server_info until it answers; fail early with the log when the server exits."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"sidflow ui exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/server_info", timeout=5) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.5)
        raise AssertionError(f"sidflow ui did not answer on {self.url} within {timeout_s:.0f} s:\n{self.log_tail()}")

    def stop(self, grace_s: float = 20) -> None:
        """SIGINT (Ctrl-C, what the README tells users) to the group, SIGKILL for whatever is left after grace_s."""
        group = self.process.pid  # the session leader's pid is the group id
        for sig, wait_s in ((signal.SIGINT, grace_s), (signal.SIGKILL, 10)):
            try:
                os.killpg(group, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + wait_s
            while time.monotonic() < deadline and _group_alive(group, self.process):
                time.sleep(0.25)
            if not _group_alive(group, self.process):
                break
        self.process.wait(timeout=10)


def _group_alive(group: int, leader: subprocess.Popen) -> bool:
    leader.poll()  # reap the leader so a zombie does not keep the group "alive"
    try:
        os.killpg(group, 0)
        return True
    except ProcessLookupError:
        return False


def listening_addresses(port: int) -> set[str]:
    """Local addresses of the TCP sockets listening on `port` (Linux /proc/net): dotted IPv4, or the raw hex
    of an IPv6 address, which loopback-only binding must not have."""
    found = set()
    for table, ipv6 in (("/proc/net/tcp", False), ("/proc/net/tcp6", True)):
        if not os.path.exists(table):
            continue
        with open(table) as rows:
            for row in list(rows)[1:]:
                local, state = row.split()[1], row.split()[3]
                address, port_hex = local.split(":")
                if state == "0A" and int(port_hex, 16) == port:  # 0A: TCP_LISTEN
                    found.add(f"ipv6:{address}" if ipv6 else socket.inet_ntoa(bytes.fromhex(address)[::-1]))
    return found


def outward_address() -> str | None:
    """This machine's address on its default route (a UDP connect sends nothing), or None without one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: never contacted, only routed
        except OSError:
            return None
        address = probe.getsockname()[0]
    return None if address.startswith("127.") else address


def accepts_connections(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=3):
            return True
    except OSError:
        return False
