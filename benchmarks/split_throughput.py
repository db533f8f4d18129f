#!/usr/bin/env python3
"""Samples/s of the real edge/cloud pair on loopback for K = 0 (synchronous split, the
JointDNN baseline) and K = 4 (feature replay), next to standalone training of the same
model, and bytes per step in each direction. All runs happen back to back in one
invocation so their ratios are comparable on a shared machine.

    benchmarks/split_throughput.py [--config configs/fashion_mnist_cnn.yaml] [--batches 200]
"""

import argparse
import tempfile
from pathlib import Path

from tandem_bench import ROOT, markdown_table, run_pair, run_standalone


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(ROOT / "configs" / "fashion_mnist_cnn.yaml"))
    parser.add_argument("--batches", type=int, default=200, help="training batches per run")
    parser.add_argument("--split", type=int, default=2, help="split point")
    parser.add_argument("--repeat", type=int, default=1, help="runs per configuration (the best is kept)")
    args = parser.parse_args()

    common = {"run.epochs": 1, "data.max_train_batches": args.batches, "data.max_test_batches": 20,
              "split.point": args.split, "split.staleness_warmup_steps": 0}  # K from the first step
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        results = {}
        for name, kind, extra in [("standalone", "standalone", {}),
                                  ("split K=0", "pair", {"split.staleness": 0}),
                                  ("split K=4", "pair", {"split.staleness": 4})]:
            best = None
            for r in range(args.repeat):
                out = str(Path(tmp) / f"{name.replace(' ', '_')}_{r}")
                settings = dict(common, **extra)
                edge = run_standalone(args.config, settings, out) if kind == "standalone" else run_pair(
                    args.config, settings, out)[0]
                if best is None or edge["train_samples_per_second"] > best["train_samples_per_second"]:
                    best = edge
            results[name] = best
        base = results["standalone"]["train_samples_per_second"]
        for name, s in results.items():
            steps = max(1, s["steps"])
            rows.append([name, f"{s['train_samples_per_second']:.0f}", f"{s['train_samples_per_second'] / base:.2f}",
                         f"{s['bytes_uplink'] / steps / 1024:.1f}", f"{s['bytes_downlink'] / steps / 1024:.1f}",
                         f"{s['final_test_accuracy'] * 100:.2f}"])
    print(markdown_table(["run", "samples/s", "vs standalone", "KiB/step up", "KiB/step down", "test acc %"], rows))


if __name__ == "__main__":
    main()
