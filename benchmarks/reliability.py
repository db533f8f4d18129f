#!/usr/bin/env python3
"""What hostile peers cost a live cloud: for each tandem_attack attack, runs
cloud_trainer --keep-serving and a good edge_trainer on loopback without and with the
attack, side by side in one run, and prints a Markdown table: the cloud's peak RSS and
its RSS after the attack, its log size, the good run's time (with / without, the
slowdown) and its test accuracy (with / without).

Usage: benchmarks/reliability.py [--build-dir build] [--attacks a,b] [--repeats N]
Standard library only; Linux (/proc) only.
"""

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

ATTACKS = ["hello-flood", "bad-handshake", "oversize-shapes", "many-frames", "big-frames", "replay", "slow-drip",
           "resync-flood", "gap-flood", "junk"]
# Attacks that hold their connections until stopped: stopped once the good run ends.
HOLDING = {"slow-drip", "resync-flood", "gap-flood"}

# The hostile-peer tests' config (tests/trainers/hostile_process_test.cpp): small, K = 0,
# deterministic, short timeouts so a stalled cloud fails the good edge within seconds.
CONFIG = """\
run: {name: reliability, epochs: 2, seed: 2, threads: 1}
data: {dataset: synthetic, batch_size: 32, synthetic: {train_size: 1024, test_size: 256, height: 12, width: 12, noise: 3.0}}
model: {name: cnn}
split: {point: 2, staleness: 0}
security: {mode: plaintext}
checkpoint: {enabled: false}
link: {endpoint: "tcp://127.0.0.1:*", heartbeat_interval_s: 0.3, peer_timeout_s: 5, reconnect_grace_s: 25,
       connect_timeout_s: 10, max_message_mb: 8}
"""


def status_kb(pid, field):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def wait_file(path, seconds, proc):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if path.exists() and path.read_text().strip():
            return path.read_text().strip()
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    return None


def stop(proc, sig, seconds):
    """Sends `sig`, waits up to `seconds`, then SIGKILL; returns the exit code (None if killed)."""
    if proc.poll() is not None:
        return proc.returncode
    proc.send_signal(sig)
    try:
        return proc.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return None


def one_run(build, attack, work, args):
    """cloud + good edge (+ attack); returns a dict of measurements."""
    work.mkdir(parents=True, exist_ok=True)
    config = work / "run.yaml"
    config.write_text(CONFIG)
    trainers = build / "trainers"
    cloud_log = open(work / "cloud.log", "w")
    cloud = subprocess.Popen([str(trainers / "cloud_trainer"), "--config", str(config), "--keep-serving",
                              "--endpoint-file", str(work / "endpoint"), "--set", f"run.output_dir={work / 'out'}"],
                             stdout=cloud_log, stderr=subprocess.STDOUT)
    attacker = None
    result = {"attack": attack}
    try:
        endpoint = wait_file(work / "endpoint", 60, cloud)
        if endpoint is None:
            raise RuntimeError(f"cloud_trainer did not start; see {work / 'cloud.log'}")
        baseline = status_kb(cloud.pid, "VmRSS")
        if attack:
            attacker = subprocess.Popen(
                [str(trainers / "tandem_attack"), "--endpoint", endpoint, "--attack", attack, "--seconds",
                 str(args.attack_seconds), "--config", str(config), "--corpus",
                 str(ROOT / "tests" / "fuzz" / "corpus" / "protocol")],
                stdout=open(work / "attack.log", "w"), stderr=subprocess.STDOUT)
            time.sleep(0.3)
        start = time.monotonic()
        with open(work / "edge.log", "w") as edge_log:
            edge = subprocess.Popen([str(trainers / "edge_trainer"), "--config", str(config), "--set",
                                     f"link.endpoint={endpoint}", "--set", f"run.output_dir={work / 'edge'}"],
                                    stdout=subprocess.DEVNULL, stderr=edge_log)
            try:
                result["edge_code"] = edge.wait(timeout=args.edge_timeout)
            except subprocess.TimeoutExpired:
                result["edge_code"] = "hung (killed)"
                edge.kill()
                edge.wait()
        result["seconds"] = time.monotonic() - start
        try:
            with open(work / "edge" / "summary-edge.json") as f:
                result["accuracy"] = json.load(f).get("final_test_accuracy")
        except (OSError, ValueError):
            result["accuracy"] = None
        if attacker and attack not in HOLDING:
            try:
                attacker.wait(timeout=args.attack_seconds + 15)
            except subprocess.TimeoutExpired:
                pass
        peak = status_kb(cloud.pid, "VmHWM")
        result["peak_mb"] = (peak or 0) / 1024
        result["baseline_mb"] = (baseline or 0) / 1024
        if attack:
            time.sleep(args.settle)
        result["after_mb"] = (status_kb(cloud.pid, "VmRSS") or 0) / 1024
        result["log_kb"] = os.path.getsize(work / "cloud.log") / 1024
        result["cloud_code"] = stop(cloud, signal.SIGTERM, 10)
    finally:
        if attacker:
            stop(attacker, signal.SIGTERM, 15)
            text = (work / "attack.log").read_text(errors="replace")
            m = re.search(r"leaked_fingerprint=([01])", text)
            result["leaked"] = m.group(1) if m else "?"
        stop(cloud, signal.SIGKILL, 5)
        cloud_log.close()
    return result


def fmt(value, spec):
    return "–" if value is None else format(value, spec)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build-dir", default="build", help="where the trainers and tandem_attack were built")
    parser.add_argument("--attacks", default=",".join(ATTACKS), help="comma-separated (default: all)")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each (the median time is shown)")
    parser.add_argument("--attack-seconds", type=float, default=30.0, help="each attack's --seconds")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds after the attack before 'RSS after'")
    parser.add_argument("--work-dir", help="keep each run's logs here (default: a temporary directory, removed)")
    parser.add_argument("--edge-timeout", type=float, default=60.0, help="give up on the good edge after this")
    args = parser.parse_args()
    build = Path(args.build_dir)
    if not build.is_absolute():
        build = (Path.cwd() / build).resolve()
    for binary in ("cloud_trainer", "edge_trainer", "tandem_attack"):
        if not (build / "trainers" / binary).exists():
            sys.exit(f"reliability.py: {build / 'trainers' / binary} not found (build it, or pass --build-dir)")
    attacks = [a for a in args.attacks.split(",") if a]
    unknown = [a for a in attacks if a not in ATTACKS]
    if unknown:
        parser.error(f"unknown attack(s) {', '.join(unknown)} (known: {', '.join(ATTACKS)})")

    def median(values):
        values = sorted(v for v in values if v is not None)
        return values[len(values) // 2] if values else None

    rows = []
    with tempfile.TemporaryDirectory(prefix="tandem_reliability_") as scratch:
        tmp = args.work_dir or scratch
        for attack in attacks:
            clean, hostile = [], []
            for r in range(args.repeats):
                # Side by side: each attacked run next to an undisturbed one.
                clean.append(one_run(build, None, Path(tmp) / f"{attack}-{r}-clean", args))
                hostile.append(one_run(build, attack, Path(tmp) / f"{attack}-{r}-attack", args))
                print(f"{attack} #{r + 1}: {hostile[-1]}", file=sys.stderr)
            rows.append((attack, clean, hostile))

    print("| attack | cloud peak RSS (MB) | RSS after (MB) | cloud log (KB) | good run s (with / without) | slowdown "
          "| good run accuracy (with / without) | good edge exit | cloud exit on SIGTERM | fingerprint leaked |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for attack, clean, hostile in rows:
        with_s, without_s = median([h["seconds"] for h in hostile]), median([c["seconds"] for c in clean])
        slowdown = with_s / without_s if with_s and without_s else None
        last = hostile[-1]
        cloud_exit = last.get("cloud_code")
        print(f"| {attack} | {fmt(median([h.get('peak_mb') for h in hostile]), '.0f')} "
              f"(base {fmt(last.get('baseline_mb'), '.0f')}) | {fmt(median([h.get('after_mb') for h in hostile]), '.0f')} "
              f"| {fmt(median([h.get('log_kb') for h in hostile]), '.0f')} "
              f"| {fmt(with_s, '.1f')} / {fmt(without_s, '.1f')} | {fmt(slowdown, '.2f')}× "
              f"| {fmt(last.get('accuracy'), '.4f')} / {fmt(clean[-1].get('accuracy'), '.4f')} "
              f"| {last.get('edge_code')} | {'hung (killed)' if cloud_exit is None else cloud_exit} "
              f"| {last.get('leaked', '?')} |")


if __name__ == "__main__":
    main()
