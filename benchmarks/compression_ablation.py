#!/usr/bin/env python3
"""Accuracy ablation of uplink compression: `cnn` on Fashion-MNIST split after stage 2
with K = 4, uplink none / int8 / int8 + error feedback / int4 + error feedback /
topk:0.1. Runs the real edge/cloud pair on loopback for each and prints a Markdown table
of final test accuracy and bytes per training step.

    benchmarks/compression_ablation.py [--epochs 2] [--batches 0]
"""

import argparse
import tempfile
from pathlib import Path

from tandem_bench import ROOT, markdown_table, run_pair

RUNS = [
    ("none", {"compression.uplink": "none", "compression.error_feedback": False}),
    ("int8", {"compression.uplink": "int8", "compression.error_feedback": False}),
    ("int8 + EF", {"compression.uplink": "int8", "compression.error_feedback": True}),
    ("int4 + EF", {"compression.uplink": "int4", "compression.error_feedback": True}),
    ("topk:0.1", {"compression.uplink": "topk:0.1", "compression.error_feedback": False}),
]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(ROOT / "configs" / "fashion_mnist_cnn.yaml"))
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batches", type=int, default=0, help="training batches per epoch (0: all)")
    args = parser.parse_args()
    common = {"run.epochs": args.epochs, "data.max_train_batches": args.batches, "split.point": 2,
              "split.staleness": 4, "split.staleness_warmup_steps": 0, "compression.downlink": "none"}
    rows = []
    reference = None
    with tempfile.TemporaryDirectory() as tmp:
        for name, settings in RUNS:
            edge, _ = run_pair(args.config, dict(common, **settings), str(Path(tmp) / name.replace(" ", "_")))
            steps = max(1, edge["steps"])
            acc = edge["final_test_accuracy"] * 100
            if reference is None:
                reference = acc
            rows.append([name, f"{acc:.2f}", f"{acc - reference:+.2f}", f"{edge['bytes_uplink'] / steps / 1024:.1f}",
                         f"{edge['bytes_downlink'] / steps / 1024:.1f}", f"{edge['train_samples_per_second']:.0f}"])
            print(f"{name}: {acc:.2f}%", flush=True)
    print(markdown_table(["uplink", "test acc %", "Δ vs none", "KiB/step up", "KiB/step down", "samples/s"], rows))


if __name__ == "__main__":
    main()
