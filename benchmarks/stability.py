#!/usr/bin/env python3
"""Stability benchmark (issue 12): does split training with feature replay ever diverge,
or end far below the standalone baseline, on links and settings nobody tuned it for?

A matrix of model x split x uplink codec x K x link, each run for real (cloud_trainer and
edge_trainer on loopback, link.emulate for the traces) for a few epochs, plus
`split.point: auto` on every link. Links: plain loopback, the shipped step-drop trace and
traces generated at run time from a seed (printed, so a run can be replayed): an
oscillating one and a fading one with outages. Every run goes through the divergence
guard with the defaults; a run counts as

  ok        finished, final test accuracy within 5 points of standalone;
  worse     finished more than 5 points below standalone;
  diverged  stopped by the divergence guard (exit 1), or a non-finite final loss.

The table also lists the guard's interventions per run (rollbacks it made to rescue it).

    benchmarks/stability.py [--models cnn] [--splits 1 3] [--codecs none int8 int4] [--staleness 4]
                            [--links loopback step_drop oscillating fading] [--epochs 2] [--batches 60]
                            [--seed S] [--timeout S] [--set KEY=VALUE ...] [--out DIR]

A slow pair on a slow link takes long: cnn at p = 1 with `none` moves 6.4 MB a batch, over
10 minutes an epoch at the step-drop trace's 5 Mbit/s; --timeout ends such a run (status
timeout, verdict from what it trained).

Writes DIR/stability.csv and DIR/stability.md; prints the markdown table.
"""

import argparse
import csv
import math
import random
import time
from pathlib import Path

from tandem_bench import ROOT, markdown_table, run_pair_bounded, run_standalone_bounded

CONFIGS = {
    "mlp": ROOT / "configs" / "fashion_mnist_mlp.yaml",
    "cnn": ROOT / "configs" / "fashion_mnist_cnn.yaml",
}
# A shallow and a deep split per model (stages: mlp 3, cnn 5).
SPLITS = {"mlp": [1, 2], "cnn": [1, 3]}
CODECS = ["none", "int8", "int4"]


def write_trace(path, kind, seed, seconds=600):
    """A bandwidth trace from `seed`: `oscillating` (two link states, switching every
    5-20 s) or `fading` (slow fades with short outages to 0.2 Mbit/s)."""
    rng = random.Random(seed)
    rows, t = [], 0.0
    if kind == "oscillating":
        high, low = rng.uniform(20, 80), rng.uniform(1, 6)
        state = True
        while t < seconds:
            up = high if state else low
            rows.append((t, up, 4 * up))
            t += rng.uniform(5, 20)
            state = not state
    else:
        mean, period = rng.uniform(5, 40), rng.uniform(30, 90)
        while t < seconds:
            up = mean * (1 + 0.6 * math.sin(2 * math.pi * t / period)) * rng.uniform(0.7, 1.3)
            if rng.random() < 0.08:
                up = 0.2
            up = max(0.2, up)
            rows.append((t, up, 3 * up))
            t += 2.0
    with open(path, "w") as f:
        f.write(f"# {kind}, seed {seed} (benchmarks/stability.py)\n")
        f.write("time_s,uplink_mbps,downlink_mbps\n")
        for t, up, down in rows:
            f.write(f"{t:.1f},{up:.3f},{down:.3f}\n")


def write_results(out, rows, seed):
    """Writes DIR/stability.csv and DIR/stability.md from the rows so far (after every run,
    so a long matrix stopped part-way keeps what it measured); returns the markdown."""
    with open(out / "stability.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    table = markdown_table(
        ["model", "link", "split", "codec", "K (end)", "test acc", "standalone", "guard rollbacks", "samples/s",
         "verdict"],
        [[r["model"], r["link"], f"{r['split']}" + (f" → {r['chosen_split']}" if r["split"] == "auto" else ""),
          r["codec"], f"{r['K']} ({r['final_K']})",
          "—" if r["test_accuracy"] is None else f"{100 * r['test_accuracy']:.2f}%",
          f"{100 * r['standalone_accuracy']:.2f}%", r["interventions"],
          "—" if r["samples_per_s"] is None else f"{r['samples_per_s']:.0f}", r["verdict"]] for r in rows])
    counts = {v: sum(1 for r in rows if r["verdict"] == v) for v in ("ok", "worse", "diverged", "no result")}
    summary = (f"{len(rows)} runs, traces seed {seed}: " + ", ".join(f"{n} {v}" for v, n in counts.items()) +
               f"; {sum(1 for r in rows if r['interventions'])} needed the guard.")
    text = summary + "\n\n" + table + "\n"
    (out / "stability.md").write_text(text)
    return text


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["cnn"], choices=sorted(CONFIGS))
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batches", type=int, default=60, help="training batches per epoch")
    parser.add_argument("--test-batches", type=int, default=40)
    parser.add_argument("--splits", nargs="+", type=int, default=None, help="split points (default: per model)")
    parser.add_argument("--links", nargs="+", default=["loopback", "step_drop", "oscillating", "fading"],
                        choices=["loopback", "step_drop", "oscillating", "fading"])
    parser.add_argument("--codecs", nargs="+", default=CODECS)
    parser.add_argument("--staleness", nargs="+", type=int, default=[4], help="K values")
    parser.add_argument("--seed", type=int, default=None, help="seed of the generated traces (default: random)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per run")
    parser.add_argument("--out", default="/tmp/tandem_stability")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="config override for every run (e.g. split.compensation=lr); default: the defaults")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1, 10**6)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"traces from seed {seed}", flush=True)
    links = {"loopback": None, "step_drop": ROOT / "benchmarks" / "traces" / "step_drop.csv"}
    links = {name: trace for name, trace in links.items() if name in args.links}
    for i, kind in enumerate(("oscillating", "fading")):
        if kind in args.links:
            path = out / f"{kind}-{seed + i}.csv"
            write_trace(path, kind, seed + i)
            links[f"{kind}-{seed + i}"] = path

    rows = []
    for model in args.models:
        config = CONFIGS[model]
        common = {"run.epochs": args.epochs, "data.max_train_batches": args.batches,
                  "data.max_test_batches": args.test_batches, "run.threads": 1, "metrics.port": 0,
                  "link.peer_timeout_s": 120}
        for item in args.set:
            key, sep, value = item.partition("=")
            if not sep:
                raise SystemExit(f"--set {item}: expected KEY=VALUE")
            common[key] = value
        base = run_standalone_bounded(config, common, out / f"{model}-standalone", args.timeout)
        if base["status"] != "ok":
            raise SystemExit(f"standalone {model} failed: {base['error']}")
        base_acc = base["edge"]["final_test_accuracy"]
        print(f"{model} standalone: {100 * base_acc:.2f}%", flush=True)
        cases = [(p, c, k) for p in (args.splits or SPLITS[model]) for c in args.codecs for k in args.staleness]
        cases += [("auto", "none", max(args.staleness))]
        for link, trace in links.items():
            for split, codec, k in cases:
                settings = dict(common, **{"split.point": split, "compression.uplink": codec, "split.staleness": k})
                if split == "auto":
                    settings["scheduler.codecs"] = "[" + ",".join(args.codecs) + "]"
                    settings["scheduler.profile_dir"] = str(out / "profiles")
                if trace is not None:
                    settings.update({"link.emulate.trace": str(trace), "link.emulate.rtt_ms": 20})
                name = f"{model}-{link}-p{split}-{codec}-k{k}"
                started = time.time()
                r = run_pair_bounded(config, settings, out / name, args.timeout)
                edge = r["edge"] or {}
                loss = edge.get("final_train_loss")
                acc = edge.get("final_test_accuracy")
                if edge.get("diverged") or r["status"] == "failed" or loss is None or not math.isfinite(loss):
                    verdict = "diverged" if edge.get("diverged") or r["status"] == "failed" else "no result"
                elif acc is None:
                    verdict = "no result"
                else:
                    verdict = "ok" if acc >= base_acc - 0.05 else "worse"
                chosen = edge.get("split_points", [None])[-1] if split == "auto" else split
                row = {"model": model, "link": link, "split": split, "chosen_split": chosen, "codec": codec,
                       "K": k, "final_K": (edge.get("staleness") or [None])[-1], "status": r["status"],
                       "verdict": verdict, "test_accuracy": acc, "standalone_accuracy": base_acc,
                       "interventions": len(edge.get("interventions", [])),
                       "samples_per_s": edge.get("train_samples_per_second"), "seconds": time.time() - started}
                rows.append(row)
                print(f"{name}: {verdict} acc {acc} interventions {row['interventions']} ({r['status']})", flush=True)
                write_results(out, rows, seed)

    print(write_results(out, rows, seed))


if __name__ == "__main__":
    main()
