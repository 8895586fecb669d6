"""Running the daemon: SIGHUP reload, Prometheus metrics, JSON logs."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from cfban.config import load_settings
from cfban.watch import Daemon, WatchOptions
from cfban.watch._metrics import Metrics, serve_metrics
from tests.support.intake import clean_env
from tests.support.logs import PROBE, log_date
from tests.support.nginx import free_port
from tests.support.waiting import wait_until

MISSING = '{ip} - - [{date}] "GET /nothing-{n} HTTP/1.1" 404 153 "-" "curl/8"\n'


def _config(tmp: Path, *, with_4xx: bool) -> Path:
    log = tmp / "access.log"
    text = (
        f'state_dir = "{tmp / "state"}"\n[realip]\nallow_test_nets = true\n'
        f'[jails.probes]\nfilter = "nginx-probes"\nlogpath = ["{log}"]\nmaxretry = 2\n'
    )
    if with_4xx:
        text += f'[jails.four]\nfilter = "nginx-4xx"\nlogpath = ["{log}"]\nmaxretry = 3\n'
    path = tmp / "cfban.toml"
    path.write_text(text)
    return path


def test_reload_adds_a_jail_and_keeps_following(tmp_path: Path) -> None:
    config = _config(tmp_path, with_4xx=False)
    (tmp_path / "access.log").touch()
    env = {"CFBAN_ALLOW_TEST_NETS": "1"}
    daemon = Daemon(
        load_settings(config, env=env),
        WatchOptions(poll=0.1, reload=lambda: load_settings(config, env=env)),
    )
    thread = threading.Thread(target=daemon.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: bool(daemon._files))
        assert [j.name for j in daemon.jails] == ["probes"]
        _config(tmp_path, with_4xx=True)
        daemon.request_reload()
        wait_until(lambda: [j.name for j in daemon.jails] == ["probes", "four"])
        with (tmp_path / "access.log").open("a") as handle:
            for n in range(3):
                handle.write(MISSING.format(ip="203.0.113.90", date=log_date(), n=n))
        wait_until(lambda: daemon.metrics.bans["four"] == 1)
        # A broken configuration on reload keeps the running one.
        config.write_text("[jails.x]\nfilter = 1\n")
        daemon.request_reload()
        time.sleep(0.5)
        assert [j.name for j in daemon.jails] == ["probes", "four"]
    finally:
        daemon.stop()
        thread.join(timeout=30)
    assert not thread.is_alive()


def test_prometheus_endpoint() -> None:
    metrics = Metrics()
    metrics.lines = 42
    metrics.bans["probes"] = 3
    metrics.refused["cloudflare"] = 2
    port = free_port()
    server = serve_metrics(f"127.0.0.1:{port}", metrics.prometheus)
    try:
        with httpx.Client(trust_env=False, timeout=5) as client:
            answer = client.get(f"http://127.0.0.1:{port}/metrics")
            missing = client.get(f"http://127.0.0.1:{port}/other")
    finally:
        server.shutdown()
        server.server_close()
    assert answer.status_code == 200
    assert "cfban_lines_read_total 42" in answer.text
    assert 'cfban_bans_total{jail="probes"} 3' in answer.text
    assert 'cfban_refused_total{reason="cloudflare"} 2' in answer.text
    assert "# TYPE cfban_queue_depth gauge" in answer.text
    assert missing.status_code == 404


def test_json_logs_and_sigterm(tmp_path: Path) -> None:
    config = _config(tmp_path, with_4xx=False)
    (tmp_path / "access.log").write_text(PROBE.format(ip="203.0.113.91", date=log_date()) * 2)
    env = clean_env()
    process = subprocess.Popen(
        [sys.executable, "-m", "cfban", "--config", str(config), "watch", "--from-start",
         "--log-format", "json", "--poll", "0.1"],
        stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        wait_until(
            lambda: (tmp_path / "state" / "status.json").exists() or process.poll() is not None
        )
        time.sleep(0.5)
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    records = [json.loads(line) for line in err.splitlines() if line.strip()]
    assert records and all({"time", "level", "logger", "message"} <= r.keys() for r in records)
    assert any("ban 203.0.113.91" in r["message"] for r in records)
    assert any(r["level"] == "warning" and "dry run" in r["message"] for r in records)
