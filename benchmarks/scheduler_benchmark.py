#!/usr/bin/env python3
"""Benchmarks of the context-aware scheduler (docs/scheduler-benchmark.md):

  matrix      SIMULATED: every zoo model x every shipped trace (benchmarks/traces/*.csv)
              + traces generated from random seeds at run time (oscillating, fading,
              outages; the seed is printed, --seed replays it), auto vs every fixed
              (split, codec) pair, by build/benchmarks/scheduler/scheduler_replay (the real
              Planner, CostModel, LinkEstimator and EdgeScheduler over a simulated edge
              loop, with stage profiles measured on this host). auto / best per cell,
              median and worst, and the start prediction's error.
  measured    MEASURED: real edge/cloud runs with link.emulate.trace for cnn and mlp on
              2 shipped + 2 random traces, auto vs every fixed pair (a pair slower than
              3x the best so far + 20 s is stopped: not the optimum), then the replay of
              the same cells: auto / best measured, and the replay's error against the
              measured times.
  adaptation  the step-drop trace (benchmarks/traces/step_drop.csv: 50 -> 5 Mbit/s up,
              100 -> 20 down, at 30 s): samples/s before and after, the steps until the
              re-partition, next to the fixed pair that auto chose before the drop.

    benchmarks/scheduler_benchmark.py [matrix] [measured] [adaptation] [--seed S] [--out DIR]
"""

import argparse
import csv
import json
import os
import statistics
import subprocess
import tempfile
from pathlib import Path

from tandem_bench import BUILD, ROOT, markdown_table, run_pair

CONFIG = ROOT / "configs" / "fashion_mnist_cnn.yaml"
CODECS = ["none", "int8"]


def base_settings(args, uplink, downlink, out):
    return {
        "run.epochs": 1,
        "data.max_train_batches": args.batches,
        "data.max_test_batches": 2,
        "split.staleness": 4,
        "split.staleness_warmup_steps": 0,  # the planner's K from the first step, as in its model
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


REPLAY = BUILD / "benchmarks" / "scheduler" / "scheduler_replay"
SHIPPED = sorted(str(p) for p in (ROOT / "benchmarks" / "traces").glob("*.csv"))


def matrix(args):
    cmd = [str(REPLAY), "--models", "mlp,cnn,vgg11,mobilenetv2,resnet18", "--traces", ",".join(SHIPPED),
           "--random", str(args.random), "--seed", str(args.seed), "--rtt", str(args.rtt),
           "--codecs", ",".join(CODECS), "--profile-dir", str(Path(args.out) / "profiles"),
           "--out", str(Path(args.out) / "matrix")]
    print("$ " + " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT)


def stages(model):
    return {"mlp": 4, "cnn": 5}[model]


def measured(args):
    out = Path(args.out) / "measured"
    out.mkdir(parents=True, exist_ok=True)
    generated = []
    for i, kind in enumerate(("oscillating", "outages")):
        path = out / f"{kind}-{args.seed + 100 + i}.csv"
        subprocess.run([str(REPLAY), "--write-trace", kind, "--seed", str(args.seed + 100 + i), "--out", str(path)],
                       check=True, cwd=ROOT)
        generated.append(str(path))
    shipped = [str(ROOT / "benchmarks" / "traces" / t) for t in ("4g.csv", "wifi.csv")]
    # Interleaved (shipped, random, shipped, random) so --measured-traces 2 keeps one of each.
    traces = [shipped[0], generated[0], shipped[1], generated[1]][:args.measured_traces]
    rows, error_rows, ratios = [], [], []
    for model in args.models:
        config = ROOT / "configs" / f"fashion_mnist_{model}.yaml"
        for trace in traces:
            tag = f"{model}-{Path(trace).stem}"
            settings = {
                "run.epochs": 1, "data.max_train_batches": args.batches, "data.max_test_batches": 2,
                "scheduler.codecs": "[" + ",".join(CODECS) + "]",
                "scheduler.profile_dir": str(Path(args.out) / "profiles"),
                "link.emulate.trace": trace, "link.emulate.rtt_ms": args.rtt, "link.peer_timeout_s": 120,
                "split.staleness_warmup_steps": 0,  # the config's K from the first step, as the replay runs it
            }
            auto_edge, _ = run_pair(config, dict(settings, **{"split.point": "auto"}), str(out / tag / "auto"))
            auto_time = epoch_seconds(auto_edge)
            used = " → ".join(f"p{r['to']} {r['codec']}" for r in auto_edge["repartitions"]) or "—"
            measured_times, best = {}, None
            for split in range(stages(model) + 1):
                for codec in CODECS:
                    fixed = dict(settings, **{"split.point": split, "compression.uplink": codec,
                                              "scheduler.enabled": True})
                    limit = None if best is None else 3 * best + 20
                    try:
                        edge, _ = run_pair(config, fixed, str(out / tag / f"p{split}_{codec}"), timeout=limit)
                        t = epoch_seconds(edge)
                        best = t if best is None else min(best, t)
                        measured_times[f"p{split} {codec}"] = t
                    except subprocess.TimeoutExpired:
                        pass
                    print(f"{tag} p{split} {codec}: {measured_times.get(f'p{split} {codec}')}", flush=True)
            measured_times["auto"] = auto_time
            # The replay of the same cell.
            replay_dir = out / tag / "replay"
            subprocess.run([str(REPLAY), "--models", model, "--traces", trace, "--random", "0",
                            "--iterations", str(args.batches), "--rtt", str(args.rtt), "--codecs", ",".join(CODECS),
                            "--profile-dir", str(Path(args.out) / "profiles"), "--out", str(replay_dir)],
                           check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
            simulated = {r["pair"]: float(r["simulated_s"]) for r in csv.DictReader(open(replay_dir / "replay.csv"))}
            for pair, t in measured_times.items():
                error_rows.append((tag, pair, simulated[pair], t))
            best_pair = min((k for k in measured_times if k != "auto"), key=lambda k: measured_times[k])
            ratio = measured_times[best_pair] / auto_time
            ratios.append(ratio)
            rows.append([model, Path(trace).stem, f"{auto_time:.2f}", used, best_pair,
                         f"{measured_times[best_pair]:.2f}", f"{ratio:.3f}", f"{simulated['auto']:.2f}"])
    print()
    print(markdown_table(["model", "trace", "auto s (measured)", "auto re-partitions", "best fixed (measured)",
                          "best s (measured)", "auto / best (measured)", "auto s (replay)"], rows))
    errors = sorted(abs(s - m) / m * 100 for _, _, s, m in error_rows)
    print(f"\nmeasured auto / best over {len(ratios)} cells: median {statistics.median(ratios):.3f}, "
          f"worst {min(ratios):.3f}")
    print(f"replay (simulated) vs measured epoch time over {len(errors)} runs: median |error| "
          f"{statistics.median(errors):.1f}%, max {max(errors):.1f}%")
    with open(out / "replay_vs_measured.csv", "w") as f:
        f.write("cell,pair,replay_s,measured_s\n")
        for tag, pair, s_, m in error_rows:
            f.write(f"{tag},{pair},{s_:.3f},{m:.3f}\n")


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
    parser.add_argument("what", nargs="*", default=["matrix", "measured"])
    parser.add_argument("--batches", type=int, default=40, help="training batches per measured run")
    parser.add_argument("--models", nargs="+", default=["cnn", "mlp"], help="measured: models")
    parser.add_argument("--measured-traces", type=int, default=4, help="measured: traces per model (at most 4)")
    parser.add_argument("--random", type=int, default=9, help="matrix: random traces")
    parser.add_argument("--seed", type=int, default=None, help="seed of the random traces (default: random, printed)")
    parser.add_argument("--rtt", type=float, default=20.0)
    parser.add_argument("--trace", default=str(ROOT / "benchmarks" / "traces" / "step_drop.csv"),
                        help="adaptation: a one-step trace (time_s,uplink_mbps,downlink_mbps)")
    parser.add_argument("--adapt-batches", type=int, default=700, help="adaptation: batches (enough to outlast the drop)")
    parser.add_argument("--out", default=None, help="keep run folders here (default: a temporary folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.out is None:
            args.out = tmp
        if args.seed is None:
            args.seed = int.from_bytes(os.urandom(4), "little")
        print(f"seed {args.seed} (--seed {args.seed} replays these traces)", flush=True)
        if "matrix" in args.what:
            matrix(args)
        if "measured" in args.what:
            measured(args)
        if "adaptation" in args.what:
            adaptation(args)


if __name__ == "__main__":
    main()
