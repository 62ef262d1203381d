"""README's first command, end to end: `dawa demo` builds a database from sample data, scans it,
serves the app with a login per role, runs the alert scheduler beside it, and stops both on Ctrl-C.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.web.conftest import free_socket, login

pytestmark = pytest.mark.slow


def _wait_for(proc: subprocess.Popen, log: Path, text: str, seconds: float) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        out = log.read_text(encoding="utf-8", errors="replace")
        if text in out:
            return out
        if proc.poll() is not None:
            pytest.fail(f"dawa demo stopped early (exit {proc.returncode}):\n{out[-3000:]}")
        time.sleep(0.5)
    pytest.fail(f"dawa demo did not print {text!r} within {seconds}s:\n{log.read_text()[-3000:]}")


def test_demo_serves_with_alerts_waiting_and_stops_cleanly(tmp_path):
    with free_socket() as sock:
        port = sock.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAWA_")}
    env.update(COLUMNS="240", TERM="dumb")
    log = tmp_path / "demo.log"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-c", "from web.cli.main import app; app()", "demo",
                                 "--scale", "0.05", "--port", str(port)],
                                cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        text = _wait_for(proc, log, "serving Dawa on", 240)
        assert (tmp_path / "demo" / "dawa.sqlite").exists() and (tmp_path / ".env").exists()
        assert "Stock summary" in text and "Most suspicious flags" in text
        scheduler_pid = int(re.search(r"alert scheduler runs beside it \(process (\d+)\)", text).group(1))
        os.kill(scheduler_pid, 0)  # alive
        passwords = dict(re.findall(r"(demo-\w+)\s*│[^│]*│[^│]*│\s*(\S+)\s*│", text))
        assert set(passwords) == {"demo-pharmacist", "demo-manager", "demo-auditor", "demo-admin"}
        new_alerts = re.search(r"alerts: scan: (\d+) new alert", text)
        assert new_alerts and int(new_alerts.group(1)) > 0
        base = f"http://127.0.0.1:{port}"
        for _ in range(60):
            try:
                if httpx.get(base + "/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.5)
        with httpx.Client(base_url=base) as auditor:
            r = login(auditor, "demo-auditor", passwords["demo-auditor"])
            assert r.status_code == 303, r.text
            page = auditor.get("/notifications")
            assert page.status_code == 200 and 'class="notification unread"' in page.text
            assert auditor.get("/flags").status_code == 200
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.kill(scheduler_pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.5)
    else:
        os.kill(scheduler_pid, signal.SIGKILL)
        pytest.fail("the scheduler outlived the demo")
