"""Helpers for the benchmark drivers: run the real trainers as processes and read their
summaries. Standard library only."""

import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUILD = Path(os.environ.get("TANDEM_BUILD_DIR", ROOT / "build"))
EDGE = BUILD / "trainers" / "edge_trainer"
CLOUD = BUILD / "trainers" / "cloud_trainer"


def _overrides(settings):
    args = []
    for key, value in settings.items():
        if isinstance(value, bool):
            value = "true" if value else "false"
        args += ["--set", f"{key}={value}"]
    return args


def read_summary(out_dir, role):
    with open(Path(out_dir) / f"summary-{role}.json") as f:
        return json.load(f)


def run_standalone(config, settings, out_dir, timeout=3600):
    """Trains the whole model in one process; returns summary-edge.json."""
    settings = dict(settings, **{"run.output_dir": out_dir})
    cmd = [str(EDGE), "--config", str(config), "--standalone"] + _overrides(settings)
    subprocess.run(cmd, check=True, timeout=timeout, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return read_summary(out_dir, "edge")


def run_pair(config, settings, out_dir, timeout=3600, cloud_settings=None):
    """Runs cloud_trainer and edge_trainer on loopback (ephemeral port); returns
    (edge summary, cloud summary)."""
    settings = dict(settings, **{"run.output_dir": out_dir})
    with tempfile.TemporaryDirectory() as tmp:
        endpoint_file = Path(tmp) / "endpoint"
        cloud_cmd = [str(CLOUD), "--config", str(config), "--endpoint-file", str(endpoint_file)] + _overrides(
            dict(settings, **(cloud_settings or {}), **{"link.endpoint": "tcp://127.0.0.1:*"}))
        cloud_log = open(Path(tmp) / "cloud.log", "w+")
        cloud = subprocess.Popen(cloud_cmd, stdout=cloud_log, stderr=subprocess.STDOUT)
        try:
            deadline = time.time() + 120
            while not endpoint_file.exists() or not endpoint_file.read_text().strip():
                if cloud.poll() is not None or time.time() > deadline:
                    cloud_log.seek(0)
                    raise RuntimeError("cloud_trainer did not start:\n" + cloud_log.read())
                time.sleep(0.05)
            endpoint = endpoint_file.read_text().strip()
            edge_cmd = [str(EDGE), "--config", str(config)] + _overrides(dict(settings, **{"link.endpoint": endpoint}))
            edge = subprocess.run(edge_cmd, timeout=timeout, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                  text=True)
            if edge.returncode != 0:
                raise RuntimeError(f"edge_trainer exited {edge.returncode}:\n{edge.stderr[-4000:]}")
            cloud.wait(timeout=60)
        finally:
            if cloud.poll() is None:
                cloud.kill()
                cloud.wait()
            cloud_log.close()
    return read_summary(out_dir, "edge"), read_summary(out_dir, "cloud")


def markdown_table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
