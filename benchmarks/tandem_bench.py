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


def _stop(proc, grace):
    """SIGTERM (the trainer finishes its step and writes its summary), SIGKILL after `grace` s.
    Returns True when it had to be killed."""
    if proc.poll() is not None:
        return False
    proc.terminate()
    try:
        proc.wait(timeout=grace)
        return False
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return True


def _tail(path, chars=4000):
    try:
        return Path(path).read_text(errors="replace")[-chars:]
    except OSError:
        return ""


def _clear_outputs(out_dir):
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name in ("summary-edge.json", "summary-cloud.json", "timeline-edge.csv", "decisions.jsonl"):
        (out / name).unlink(missing_ok=True)
    return out


def _bounded_result(status, out, seconds, error=""):
    result = {"status": status, "seconds": seconds, "error": error, "edge": None, "cloud": None}
    for role in ("edge", "cloud"):
        if (out / f"summary-{role}.json").exists():
            try:
                result[role] = read_summary(out, role)
            except (OSError, ValueError):
                pass
    if status == "ok" and result["edge"] is None:
        result.update(status="failed", error="no summary-edge.json")
    return result


def run_standalone_bounded(config, settings, out_dir, timeout, grace=10.0):
    """run_standalone that never raises for a slow or failing run. After `timeout` seconds
    the trainer is interrupted (SIGTERM: it finishes the step and writes its summary of the
    epochs completed), killed `grace` seconds later. Returns {"status": "ok" | "timeout" |
    "failed", "seconds", "error", "edge": summary or None, "cloud": None}; edge.log is kept
    in out_dir."""
    out = _clear_outputs(out_dir)
    settings = dict(settings, **{"run.output_dir": str(out)})
    cmd = [str(EDGE), "--config", str(config), "--standalone"] + _overrides(settings)
    start = time.time()
    with open(out / "edge.log", "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            proc.wait(timeout=timeout)
            status = "ok" if proc.returncode == 0 else "failed"
        except subprocess.TimeoutExpired:
            status = "timeout"
        finally:
            _stop(proc, grace)
    seconds = time.time() - start
    error = "" if status == "ok" else (f"exit {proc.returncode}: " if status == "failed" else
                                       f"interrupted after {timeout:.0f} s: ") + _tail(out / "edge.log", 600)
    return _bounded_result(status, out, seconds, error)


def run_pair_bounded(config, settings, out_dir, timeout, grace=10.0, cloud_settings=None, startup_timeout=120):
    """run_pair that never raises for a slow or failing run: the cloud and the edge on
    loopback (ephemeral port); after `timeout` seconds of the edge the run is interrupted
    (SIGTERM: the edge finishes its step, drains what is in flight and writes its summary
    of the epochs completed), killed `grace` seconds later. Returns {"status": "ok" |
    "timeout" | "failed", "seconds" (the edge's wall time), "error", "edge", "cloud"
    (summaries or None)}; edge.log and cloud.log are kept in out_dir."""
    out = _clear_outputs(out_dir)
    settings = dict(settings, **{"run.output_dir": str(out)})
    endpoint_file = out / "endpoint"
    endpoint_file.unlink(missing_ok=True)
    cloud_cmd = [str(CLOUD), "--config", str(config), "--endpoint-file", str(endpoint_file)] + _overrides(
        dict(settings, **(cloud_settings or {}), **{"link.endpoint": "tcp://127.0.0.1:*"}))
    cloud_log = open(out / "cloud.log", "w")
    edge_log = open(out / "edge.log", "w")
    cloud = subprocess.Popen(cloud_cmd, stdout=cloud_log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    edge = None
    start = time.time()
    try:
        deadline = time.time() + startup_timeout
        while not endpoint_file.exists() or not endpoint_file.read_text().strip():
            if cloud.poll() is not None or time.time() > deadline:
                return _bounded_result("failed", out, 0.0,
                                       "cloud_trainer did not start: " + _tail(out / "cloud.log", 600))
            time.sleep(0.05)
        endpoint = endpoint_file.read_text().strip()
        edge_cmd = [str(EDGE), "--config", str(config)] + _overrides(dict(settings, **{"link.endpoint": endpoint}))
        start = time.time()
        edge = subprocess.Popen(edge_cmd, stdout=edge_log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        killed = False
        try:
            edge.wait(timeout=timeout)
            status = "ok" if edge.returncode == 0 else "failed"
        except subprocess.TimeoutExpired:
            status = "timeout"
            killed = _stop(edge, grace)
        seconds = time.time() - start
        if not killed:  # an orderly end (or a failure): the cloud ends its session and exits
            try:
                cloud.wait(timeout=grace + 5)
            except subprocess.TimeoutExpired:
                pass
        if status == "failed":
            error = f"edge_trainer exited {edge.returncode}: " + _tail(out / "edge.log", 600)
        elif status == "timeout":
            error = f"interrupted after {timeout:.0f} s"
        else:
            error = ""
        return _bounded_result(status, out, seconds, error)
    finally:
        if edge is not None:
            _stop(edge, 1.0)
        _stop(cloud, 2.0)
        cloud_log.close()
        edge_log.close()
        endpoint_file.unlink(missing_ok=True)
