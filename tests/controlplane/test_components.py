"""The control plane's bad input: each failure is one line naming the component and its log, never a hang.

Fast: no control plane is started except the one etcd that meets a port already in use.
"""

from __future__ import annotations

import pathlib
import socket
import subprocess
import sys

import pytest

from tests.controlplane import components


def test_without_go_or_binaries_the_reason_to_skip_names_the_toolchain_and_the_script(monkeypatch, tmp_path):
    monkeypatch.setattr(components, "BIN", tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert components.missing() == (
        "no Go toolchain on PATH to build kube-apiserver, etcd and kwok (tests/controlplane/build.sh)"
    )


def test_a_failed_build_raises_its_last_line_and_the_log(monkeypatch, tmp_path):
    script = tmp_path / "build.sh"
    script.write_text("#!/bin/sh\necho compiling\necho 'k8s.io/kubernetes: missing go.sum entry' >&2\nexit 1\n")
    script.chmod(0o755)
    monkeypatch.setattr(components, "BUILD", script)
    with pytest.raises(components.ComponentError) as e:
        components.build(tmp_path / "logs")
    assert str(e.value) == f"k8s.io/kubernetes: missing go.sum entry (full log: {tmp_path / 'logs' / 'build.log'})"


def process(tmp_path: pathlib.Path, code: str) -> components.Process:
    log = tmp_path / "fake.log"
    popen = subprocess.Popen([sys.executable, "-c", code], stdout=log.open("w"), stderr=subprocess.STDOUT)  # noqa: S603
    return components.Process("fake-apiserver", popen, log)


def test_a_component_that_exits_while_awaited_is_named_with_its_exit_code_and_log(tmp_path):
    fake = process(tmp_path, "import sys; sys.exit(3)")
    with pytest.raises(components.ComponentError, match=r"^fake-apiserver exited with code 3; see .*fake\.log$"):
        components.wait_for(fake, lambda: False, deadline_s=30)


def test_a_component_never_ready_fails_at_the_deadline_naming_it_and_its_log(tmp_path):
    fake = process(tmp_path, "import time; time.sleep(60)")
    try:
        with pytest.raises(components.ComponentError, match=r"^fake-apiserver not ready after 1 s; see .*fake\.log$"):
            components.wait_for(fake, lambda: False, deadline_s=1)
    finally:
        fake.stop()


@pytest.mark.skipif(not (components.BIN / "etcd").exists(), reason="etcd is not built (tests/controlplane/build.sh)")
def test_a_port_in_use_stops_the_start_naming_the_component_and_its_log(monkeypatch, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        monkeypatch.setattr(components, "free_port", lambda: taken.getsockname()[1])
        plane = components.ControlPlane(tmp_path)
        with pytest.raises(components.ComponentError, match=r"^etcd exited with code \d+; see .*etcd\.log$"):
            plane.start()
    assert all(p.popen.poll() is not None for p in plane.processes), "whatever started is stopped"
    assert "address already in use" in (tmp_path / "logs" / "etcd.log").read_text()
