#!/usr/bin/env python3
"""Fleet throughput: aggregate samples/s and the cloud's CPU seconds per sample for a shared
fleet of N edges (fleet.mode: shared), each on its own emulated link, with and without
cross-edge batching (fleet.max_cloud_batch: 4 × batch vs one batch), next to one edge
alone. Every run of one invocation happens back to back on this machine, so the ratios
(scaling efficiency = aggregate / (N × one edge), batching gain) are comparable; absolute
numbers are not. Accuracy (each edge's final test accuracy on the first test batches) is
reported next to speed. Every process gets one LibTorch thread (run.threads: 1).

    benchmarks/fleet_benchmark.py [--edges 1,2,4,8] [--trace 4g] [--batches 40]
                                  [--config configs/fashion_mnist_mlp.yaml] [--out DIR]

The table says what saturated: with more processes than cores the machine's CPU
(`cpu`), else the cloud's core when its CPU time is close to the wall time (`cloud`),
else the links (`link`).
"""

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

from tandem_bench import CLOUD, EDGE, ROOT, _overrides, markdown_table


def run_fleet(config, edges, settings, cloud_settings, out, timeout=1800):
    """One cloud and `edges` edges on loopback; returns (edge summaries, cloud CPU seconds,
    wall seconds)."""
    out.mkdir(parents=True, exist_ok=True)
    endpoint_file = out / "endpoint"
    endpoint_file.unlink(missing_ok=True)
    common = dict(settings, **{"run.threads": 1, "security.mode": "plaintext"})
    cloud_cmd = [str(CLOUD), "--config", str(config), "--endpoint-file", str(endpoint_file)] + _overrides(
        dict(common, **cloud_settings, **{"run.output_dir": str(out / "cloud"), "link.endpoint": "tcp://127.0.0.1:*",
                                          "fleet.mode": "shared", "fleet.min_edges": edges}))
    cloud_log = open(out / "cloud.log", "w")
    cloud = subprocess.Popen(cloud_cmd, stdout=cloud_log, stderr=subprocess.STDOUT)
    procs = []
    try:
        deadline = time.time() + 120
        while not endpoint_file.exists() or not endpoint_file.read_text().strip():
            if cloud.poll() is not None or time.time() > deadline:
                raise RuntimeError("cloud_trainer did not start: see " + str(out / "cloud.log"))
            time.sleep(0.05)
        endpoint = endpoint_file.read_text().strip()
        start = time.time()
        for i in range(edges):
            edge_settings = dict(common, **{"run.name": f"edge{i}", "run.output_dir": str(out / f"edge{i}"),
                                            "link.endpoint": endpoint, "data.shard.count": edges,
                                            "data.shard.index": i})
            log = open(out / f"edge{i}.log", "w")
            procs.append((subprocess.Popen([str(EDGE), "--config", str(config)] + _overrides(edge_settings),
                                           stdout=log, stderr=subprocess.STDOUT), log))
        for i, (p, log) in enumerate(procs):
            code = p.wait(timeout=timeout)
            log.close()
            if code != 0:
                raise RuntimeError(f"edge{i} exited {code}: see {out / f'edge{i}.log'}")
        wall = time.time() - start
        _, status, usage = os.wait4(cloud.pid, 0)
        cloud.returncode = os.waitstatus_to_exitcode(status)
        cpu = usage.ru_utime + usage.ru_stime
    finally:
        for p, _ in procs:
            if p.poll() is None:
                p.kill()
        if cloud.poll() is None:
            cloud.kill()
            cloud.wait()
        cloud_log.close()
    summaries = [json.loads((out / f"edge{i}" / "summary-edge.json").read_text()) for i in range(edges)]
    return summaries, cpu, wall


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(ROOT / "configs" / "fashion_mnist_mlp.yaml"))
    parser.add_argument("--edges", default="1,2,4,8", help="fleet sizes")
    parser.add_argument("--trace", default="4g", help="benchmarks/traces/<name>.csv for every edge's link")
    parser.add_argument("--batches", type=int, default=40, help="training batches per edge")
    parser.add_argument("--split", type=int, default=1)
    parser.add_argument("--out", default=None, help="where the runs go (default: a temporary directory)")
    args = parser.parse_args()
    sizes = [int(n) for n in args.edges.split(",")]
    settings = {"run.epochs": 1, "data.max_train_batches": args.batches, "data.max_test_batches": 10,
                "split.point": args.split, "checkpoint.enabled": False, "fleet.average_every": 20,
                "link.emulate.trace": str(ROOT / "benchmarks" / "traces" / f"{args.trace}.csv")}
    cores = os.cpu_count() or 1
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(args.out) if args.out else Path(tmp)
        one = None
        for n in sizes:
            for batching in (True, False):
                if n == 1 and not batching:
                    continue  # one edge has nobody to batch with
                cloud_settings = {} if batching else {"fleet.max_cloud_batch": 1}
                name = f"{n}_{'batched' if batching else 'single'}"
                summaries, cpu, wall = run_fleet(args.config, n, settings, cloud_settings, base / name)
                samples = sum(s["train_samples"] for s in summaries)
                aggregate = sum(s["train_samples_per_second"] for s in summaries)
                if n == 1:
                    one = aggregate
                accuracy = [100 * s["final_test_accuracy"] for s in summaries if s["final_test_accuracy"] is not None]
                saturated = "cpu" if n + 1 > cores else ("cloud" if cpu > 0.8 * wall else "link")
                rows.append([n, "yes" if batching else "no", f"{aggregate:.0f}",
                             f"{aggregate / (n * one):.2f}" if one else "-",
                             f"{1e3 * cpu / max(samples, 1):.3f}",
                             f"{min(accuracy):.1f}–{max(accuracy):.1f}" if accuracy else "-", saturated])
    print(f"{args.trace} link per edge, {args.batches} batches per edge, split {args.split}, {cores} cores")
    print(markdown_table(["edges", "cross-edge batching", "samples/s (sum)", "vs N × one edge",
                          "cloud CPU ms/sample", "test acc % (edges)", "saturated"], rows))


if __name__ == "__main__":
    main()
