#!/usr/bin/env python3
"""Benchmarks of the context-aware scheduler on the real edge/cloud pair with emulated
links (loopback, link.emulate):

  regret      for uplink 1, 10, 100, 1000 Mbit/s: the measured epoch time with
              split.point: auto against every fixed (split, codec) pair measured the
              same way; regret = auto / best fixed − 1.
  adaptation  the step-drop trace (benchmarks/traces/step_drop.csv: 50 -> 5 Mbit/s up,
              100 -> 20 down, at 30 s): samples/s before and after, the steps until the
              re-partition, next to the fixed pair that auto chose before the drop.
  prediction  predicted vs measured epoch time over every run of `regret` (error %).

    benchmarks/scheduler_benchmark.py [regret] [adaptation] [--batches 30] [--out DIR]
"""

import argparse
import csv
import json
import os
import statistics
import subprocess
import tempfile
from pathlib import Path

from tandem_bench import ROOT, markdown_table, run_pair

CONFIG = ROOT / "configs" / "fashion_mnist_cnn.yaml"
CODECS = ["none", "int8"]


def base_settings(args, uplink, downlink, out):
    return {
        "run.epochs": 1,
        "data.max_train_batches": args.batches,
        "data.max_test_batches": 2,
        "split.staleness": 4,
        "scheduler.codecs": "[" + ",".join(CODECS) + "]",
        "scheduler.profile_dir": str(Path(args.out) / "profiles"),
        "link.emulate.uplink_mbps": uplink,
        "link.emulate.downlink_mbps": downlink,
        "link.emulate.rtt_ms": args.rtt,
        "link.peer_timeout_s": 120,
    }


def epoch_seconds(edge):
    return edge["history"][0]["train_seconds"]


def decisions(out_dir):
    path = Path(out_dir) / "decisions.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def regret(args):
    rows, prediction_rows = [], []
    for uplink in args.uplinks:
        downlink = min(4 * uplink, 1000)
        tag = f"up{uplink:g}"
        out = Path(args.out) / tag
        settings = base_settings(args, uplink, downlink, str(out / "auto"))
        auto_edge, _ = run_pair(CONFIG, dict(settings, **{"split.point": "auto"}), str(out / "auto"))
        auto_time = epoch_seconds(auto_edge)
        first = decisions(out / "auto")[0]
        chosen = (first["choice"]["split"], first["choice"]["codec"])
        ranked = [(c["split"], c["codec"]) for c in first["candidates"]]
        for split in range(6):
            for codec in CODECS:
                if (split, codec) not in ranked:
                    ranked.append((split, codec))
        measured = {}
        best = None
        for split, codec in ranked:
            run_dir = out / f"p{split}_{codec}"
            limit = None if best is None else 3 * best + 20
            fixed = dict(settings, **{"split.point": split, "compression.uplink": codec, "scheduler.enabled": True})
            try:
                edge, _ = run_pair(CONFIG, fixed, str(run_dir), timeout=limit)
                t = epoch_seconds(edge)
                measured[(split, codec)] = t
                best = t if best is None else min(best, t)
                d = decisions(run_dir)
                if d:
                    prediction_rows.append((tag, split, codec, d[0]["predicted_current_s"], t))
            except subprocess.TimeoutExpired:
                measured[(split, codec)] = None  # slower than 3× the best: not the optimum
            print(f"{tag} p{split} {codec}: {measured[(split, codec)]}", flush=True)
        best_pair = min((k for k, v in measured.items() if v is not None), key=lambda k: measured[k])
        rows.append([f"{uplink:g}", f"{downlink:g}", f"p{chosen[0]} {chosen[1]}", f"{auto_time:.2f}",
                     f"p{best_pair[0]} {best_pair[1]}", f"{measured[best_pair]:.2f}",
                     f"{(auto_time / measured[best_pair] - 1) * 100:+.1f}%"])
    print()
    print(markdown_table(["uplink Mbit/s", "downlink Mbit/s", "auto chose", "auto epoch s", "best fixed",
                          "best fixed epoch s", "regret"], rows))
    if prediction_rows:
        errors = [abs(p - m) / m * 100 for _, _, _, p, m in prediction_rows]
        print()
        print(markdown_table(["link", "split", "codec", "predicted s", "measured s", "error"],
                             [[t, s, c, f"{p:.2f}", f"{m:.2f}", f"{(p - m) / m * 100:+.1f}%"]
                              for t, s, c, p, m in prediction_rows]))
        print(f"\nprediction error over {len(errors)} runs: median {statistics.median(errors):.1f}%, "
              f"max {max(errors):.1f}%")


def adaptation(args):
    out = Path(args.out) / "adaptation"
    out.mkdir(parents=True, exist_ok=True)
    trace = Path(args.trace).resolve()
    rows = [r for r in csv.reader(line for line in open(trace) if not line.startswith("#"))][1:]
    if len(rows) != 2:
        raise SystemExit(f"{trace}: adaptation wants a trace with one step (two rows), found {len(rows)}")
    args.drop_at = float(rows[1][0])
    print(f"trace {trace.name}: uplink {float(rows[0][1]):g} -> {float(rows[1][1]):g} Mbit/s, downlink "
          f"{float(rows[0][2]):g} -> {float(rows[1][2]):g} Mbit/s at {args.drop_at:g} s", flush=True)
    settings = base_settings(args, 0, 0, str(out))
    settings.update({"link.emulate.trace": str(trace), "data.max_train_batches": args.adapt_batches,
                     "split.point": "auto", "scheduler.replan_threshold": 0.3})
    auto_edge, _ = run_pair(CONFIG, settings, str(out / "auto"))
    timeline = list(csv.DictReader(open(out / "auto" / "timeline-edge.csv")))
    first_split = timeline[0]["split"], timeline[0]["codec"]
    fixed = dict(settings, **{"split.point": int(first_split[0]), "compression.uplink": first_split[1],
                              "scheduler.enabled": True})
    fixed_edge, _ = run_pair(CONFIG, fixed, str(out / "fixed"))
    fixed_timeline = list(csv.DictReader(open(out / "fixed" / "timeline-edge.csv")))

    def rates(tl):
        batch = 64
        before = [r for r in tl if float(r["seconds"]) < args.drop_at]
        after = [r for r in tl if float(r["seconds"]) >= args.drop_at + 2]
        def rate(rs):
            if len(rs) < 2:
                return 0.0
            return (len(rs) - 1) * batch / (float(rs[-1]["seconds"]) - float(rs[0]["seconds"]))
        return rate(before), rate(after), (before[-1]["step"] if before else None)

    auto_before, auto_after, drop_step = rates(timeline)
    fixed_before, fixed_after, _ = rates(fixed_timeline)
    repartition = next((r for r in auto_edge["repartitions"] if r["trigger"] == "bandwidth"), None)
    steps_to = (repartition["step"] - int(drop_step)) if (repartition and drop_step is not None) else None
    rows = [["auto", f"p{first_split[0]} {first_split[1]}",
             f"p{repartition['to']} {repartition['codec']}" if repartition else "—",
             f"{auto_before:.0f}", f"{auto_after:.0f}", str(steps_to) if steps_to is not None else "—"],
            ["fixed (best before)", f"p{first_split[0]} {first_split[1]}", "—", f"{fixed_before:.0f}",
             f"{fixed_after:.0f}", "—"]]
    print(markdown_table(["run", "before drop", "after drop", "samples/s before", "samples/s after",
                          "steps until re-partition"], rows))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", nargs="*", default=["regret", "adaptation"])
    parser.add_argument("--batches", type=int, default=30, help="training batches per regret run")
    parser.add_argument("--uplinks", type=float, nargs="+", default=[1, 10, 100, 1000])
    parser.add_argument("--rtt", type=float, default=20.0)
    parser.add_argument("--trace", default=str(ROOT / "benchmarks" / "traces" / "step_drop.csv"),
                        help="adaptation: a one-step trace (time_s,uplink_mbps,downlink_mbps)")
    parser.add_argument("--adapt-batches", type=int, default=700, help="adaptation: batches (enough to outlast the drop)")
    parser.add_argument("--out", default=None, help="keep run folders here (default: a temporary folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.out is None:
            args.out = tmp
        if "regret" in args.what:
            regret(args)
        if "adaptation" in args.what:
            adaptation(args)


if __name__ == "__main__":
    main()
