"""`seedbucket config default` prints every setting `serve` takes, and every setting it prints is
taken back: the printed file, edited, starts a server that follows it."""

import json
import os
import subprocess
import time
import tomllib
import urllib.request

from conftest import _binary, _free_port


def test_the_default_file_is_complete_and_accepted_back(tmp_path):
    text = subprocess.run([_binary(), "config", "default"], capture_output=True, text=True,
                          check=True).stdout
    settings = tomllib.loads(text)
    for key in ("data_dir", "listen", "access_log", "log_format", "piece_hashing", "region",
                "http_idle_timeout", "tracker_rate_limit", "domains", "trusted_proxies"):
        assert key in settings, key
    port = _free_port()
    settings.update(data_dir=str(tmp_path / "data"), listen=f"127.0.0.1:{port}", peer_listen="off",
                    log_format="json", access_log=str(tmp_path / "access.log"))
    lines = []
    for k, v in settings.items():
        if isinstance(v, list):
            lines.append(f"{k} = {json.dumps(v)}")
        elif isinstance(v, bool):
            lines.append(f"{k} = {'true' if v else 'false'}")
        elif isinstance(v, (int, float)):
            lines.append(f"{k} = {v}")
        else:
            lines.append(f"{k} = {json.dumps(v)}")
    cfg = tmp_path / "seedbucket.toml"
    cfg.write_text("\n".join(lines) + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEEDBUCKET_")}
    env["RUST_LOG"] = "info"
    proc = subprocess.Popen([_binary(), "serve", "--config", str(cfg)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_seedbucket/health", timeout=1) as r:
                    assert r.status == 200
                    break
            except OSError:
                assert proc.poll() is None, proc.communicate()
                assert time.time() < deadline, "no health"
                time.sleep(0.05)
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=20)
    logged = [line for line in err.splitlines() if line.strip()]
    assert logged and all(line.startswith("{") for line in logged), logged[:5]
    assert (tmp_path / "access.log").read_text().strip().startswith("{")


def test_a_bad_value_in_the_file_is_a_clear_error(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text('log_format = "xml"\n')
    p = subprocess.run([_binary(), "serve", "--config", str(cfg), "--data-dir", str(tmp_path / "d")],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode != 0
    assert "log_format" in p.stderr and "xml" in p.stderr
