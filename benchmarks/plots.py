#!/usr/bin/env python3
"""Plots of an ablation run (benchmarks/ablation.py), from OUT/runs.csv and the run folders
it names (summary-edge.json, timeline-edge.csv). matplotlib from Debian
(python3-matplotlib), so run it with /usr/bin/python3:

  accuracy_vs_time_<model>.png   test accuracy after each epoch against cumulative epoch
                                 wall time, one panel per link, one line per configuration
  throughput_vs_bandwidth.png    train samples/s against the mean uplink of each stationary
                                 trace (log-log), one panel per model
  step_drop_<model>.png          under the step drop: Tandem's split point and codec over
                                 time, the emulated and estimated uplink, and the training
                                 progress of every configuration

    /usr/bin/python3 benchmarks/plots.py --out /tmp/ablation-quick   # (re)draws OUT/plots/*.png
"""

import argparse
import csv
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib import ticker  # noqa: E402

from ablation import CONFIGURATION_LABELS, CONFIGURATION_NAMES, LINK_LABELS, edge_history, read_trace  # noqa: E402

STYLE = {  # configuration → (colour, marker)
    "standalone": ("black", "s"),
    "all_cloud": ("tab:gray", "o"),
    "sync_split": ("tab:blue", "o"),
    "replay": ("tab:orange", "^"),
    "replay_int8": ("tab:green", "v"),
    "replay_int8_ef": ("tab:purple", "D"),
    "tandem": ("tab:red", "*"),
}
STATIONARY = ["household_iot", "4g", "wifi", "5g"]


def load_rows(out):
    with open(Path(out) / "runs.csv") as f:
        return list(csv.DictReader(f))


def timeline(out, row):
    path = Path(out) / row["run_dir"] / "timeline-edge.csv"
    if not path.exists():
        return []
    with open(path) as f:
        return list(csv.DictReader(f))


def number(text):
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def ordered(rows):
    rank = {name: i for i, name in enumerate(CONFIGURATION_NAMES)}
    return sorted(rows, key=lambda r: rank.get(r["configuration"], 99))


def figure_legend(fig, axes):
    """One legend under the panels; returns the fraction of the figure height it takes."""
    labels = {}
    for ax in axes:
        for h, label in zip(*ax.get_legend_handles_labels()):
            labels.setdefault(label, h)
    if not labels:
        return 0.02
    order = [CONFIGURATION_LABELS[name] for name in CONFIGURATION_NAMES]
    labels = dict(sorted(labels.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else len(order)))
    width = fig.get_size_inches()[0]
    ncol = max(1, min(len(labels), int(width // 2.1)))
    fig.legend(list(labels.values()), list(labels.keys()), loc="lower center", ncol=ncol, frameon=False, fontsize=9)
    rows = -(-len(labels) // ncol)
    return (0.28 * rows + 0.15) / fig.get_size_inches()[1]


def accuracy_vs_time(out, rows, dest):
    paths = []
    for model in dict.fromkeys(r["model"] for r in rows):
        mrows = [r for r in rows if r["model"] == model]
        links = [l for l in dict.fromkeys(r["link"] for r in mrows) if l != "none"]
        if not links:
            continue
        standalone = next((r for r in mrows if r["configuration"] == "standalone"), None)
        ncols = min(3, len(links))
        nrows = -(-len(links) // ncols)
        fig, grid = plt.subplots(nrows, ncols, figsize=(max(8.0, 4.2 * ncols + 0.6), 3.6 * nrows + 0.9),
                                 sharey=True, squeeze=False)
        axes = list(grid.flat)
        for ax in axes[len(links):]:
            ax.set_visible(False)
        for ax, link in zip(axes, links):
            timeouts = []
            for row in ordered([r for r in mrows if r["link"] == link] + ([standalone] if standalone else [])):
                history, source = edge_history(Path(out) / row["run_dir"])
                colour, marker = STYLE.get(row["configuration"], ("tab:brown", "o"))
                if row["status"] != "ok":
                    timeouts.append(f"{CONFIGURATION_LABELS.get(row['configuration'], row['configuration'])}: "
                                    f"{row['status']}, {len(history)} epoch(s)")
                if not history:
                    continue
                t, xs, ys = 0.0, [], []
                for epoch in history:
                    t += float(epoch.get("epoch_seconds", 0.0))
                    xs.append(t)
                    ys.append(100.0 * float(epoch.get("test_accuracy", 0.0)))
                ax.plot(xs, ys, color=colour, marker=marker, markersize=5, linewidth=1.4,
                        linestyle="--" if row["configuration"] == "standalone" else "-",
                        label=CONFIGURATION_LABELS.get(row["configuration"], row["configuration"]))
            ax.set_title(LINK_LABELS.get(link, link))
            ax.set_xlabel("wall time, s (cumulative epochs)")
            ax.yaxis.set_tick_params(labelleft=True)
            ax.grid(True, alpha=0.3)
            ax.set_xlim(left=0)
            if timeouts:
                ax.text(0.02, 0.02, "\n".join(timeouts), transform=ax.transAxes, fontsize=7, color="dimgray",
                        va="bottom")
        for ax in axes[::ncols]:
            ax.set_ylabel("test accuracy, %")
        fig.suptitle(f"{model}: test accuracy vs wall time")
        fig.tight_layout(rect=(0, figure_legend(fig, axes), 1, 1))
        path = dest / f"accuracy_vs_time_{model}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


def throughput_vs_bandwidth(out, rows, dest):
    models = list(dict.fromkeys(r["model"] for r in rows))
    models = [m for m in models if any(r["model"] == m and r["link"] in STATIONARY for r in rows)]
    if not models:
        return []
    fig, axes = plt.subplots(1, len(models), figsize=(max(8.0, 4.6 * len(models) + 0.6), 4.8), squeeze=False)
    axes = axes[0]
    for ax, model in zip(axes, models):
        mrows = [r for r in rows if r["model"] == model]
        for name in CONFIGURATION_NAMES:
            colour, marker = STYLE.get(name, ("tab:brown", "o"))
            label = CONFIGURATION_LABELS.get(name, name)
            crows = [r for r in mrows if r["configuration"] == name]
            if name == "standalone":
                sps = number(crows[0]["train_samples_per_second"]) if crows else None
                if sps:
                    ax.axhline(sps, color=colour, linestyle="--", linewidth=1.2, label=label)
                continue
            points, open_points, limits = [], [], []
            for r in crows:
                if r["link"] not in STATIONARY:
                    continue
                x = number(r["mean_uplink_mbps"])
                y = number(r["train_samples_per_second"])
                if x is None:
                    continue
                if r["status"] == "ok" and y:
                    points.append((x, y))
                elif y:
                    open_points.append((x, y))  # interrupted: the epochs it completed
                elif r["status"] == "timeout":
                    planned = (number(r["epochs_planned"]) or 1) * (number(r["batches"]) or 0) * \
                        (number(r["batch_size"]) or 0)
                    timeout = number(r["timeout_s"])
                    if planned and timeout:
                        limits.append((x, planned / timeout))  # it did not finish: slower than this
            points.sort()
            if points:
                ax.plot(*zip(*points), color=colour, marker=marker, markersize=6, linewidth=1.4, label=label)
            if open_points:
                ax.plot(*zip(*open_points), color=colour, marker=marker, markersize=7, linestyle="none",
                        markerfacecolor="none", label=None if points else label)
            if limits:
                ax.plot(*zip(*limits), color=colour, marker="v", markersize=7, linestyle="none",
                        markerfacecolor="none", label=None if (points or open_points) else label)
        for r in mrows:
            if r["configuration"] == "tandem" and r["link"] in STATIONARY and r["split_points"]:
                x, y = number(r["mean_uplink_mbps"]), number(r["train_samples_per_second"])
                if x and y:
                    ax.annotate("p" + r["split_points"].split()[-1] + (" " + r["codecs"].split()[-1]
                                                                        if r["codecs"] else ""),
                                (x, y), textcoords="offset points", xytext=(4, 6), fontsize=7, color="tab:red")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(ticker.NullFormatter())
        links = sorted({(number(r["mean_uplink_mbps"]), r["link"]) for r in mrows
                        if r["link"] in STATIONARY and number(r["mean_uplink_mbps"])})
        ax.set_xticks([x for x, _ in links])
        ax.set_xticklabels([f"{LINK_LABELS.get(l, l)}\n{x:.3g}" for x, l in links], fontsize=8)
        ax.minorticks_off()
        ax.set_xlabel("mean uplink of the trace, Mbit/s")
        ax.set_ylabel("train samples/s")
        ax.set_title(model)
        ax.grid(True, which="both", alpha=0.3)
    fig.suptitle("train samples/s vs link bandwidth\n(hollow: interrupted run, epochs it completed; "
                 "▽: timed out, slower than this)", fontsize=10)
    fig.tight_layout(rect=(0, figure_legend(fig, axes), 1, 1))
    path = dest / "throughput_vs_bandwidth.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]


def step_drop(out, rows, dest):
    paths = []
    for model in dict.fromkeys(r["model"] for r in rows):
        drows = [r for r in rows if r["model"] == model and r["link"] == "step_drop"]
        auto = next((r for r in drows if r["configuration"] == "tandem"), None)
        if auto is None:
            continue
        tl = timeline(out, auto)
        fig, (ax_split, ax_link, ax_progress) = plt.subplots(3, 1, figsize=(8, 8.5), sharex=True,
                                                             gridspec_kw={"height_ratios": [1, 1, 1.4]})
        if tl:
            ts = [float(r["seconds"]) for r in tl]
            splits = [int(r["split"]) for r in tl]
            ax_split.step(ts, splits, where="post", color="tab:red", linewidth=1.6)
            codecs = sorted({r["codec"] for r in tl})
            markers = ["o", "s", "^", "D"]
            for i, codec in enumerate(codecs):
                pts = [(float(r["seconds"]), int(r["split"])) for r in tl if r["codec"] == codec]
                ax_split.plot(*zip(*pts), linestyle="none", marker=markers[i % 4], markersize=3.5,
                              label=f"uplink {codec}")
            # The planner's decisions (decisions.jsonl; step → time through the timeline).
            decisions_path = Path(out) / auto["run_dir"] / "decisions.jsonl"
            if decisions_path.exists():
                at = {int(r["step"]): float(r["seconds"]) for r in tl}
                changed, kept = [], []
                for line in decisions_path.read_text().splitlines():
                    try:
                        d = json.loads(line)
                    except ValueError:
                        continue
                    t = at.get(int(d.get("step", -1)))
                    if t is None:
                        continue
                    point = (t, (d.get("choice") or {}).get("split", splits[0]))
                    (changed if d.get("changed") else kept).append(point)
                if changed:
                    ax_split.plot(*zip(*changed), linestyle="none", marker="v", markersize=9, color="tab:red",
                                  label="re-partition")
                if kept:
                    ax_split.plot(*zip(*kept), linestyle="none", marker="v", markersize=9, color="tab:red",
                                  markerfacecolor="none", label="re-plan, kept")
            ax_split.legend(fontsize=8, loc="upper right")
            ax_split.set_ylim(-0.5, max(splits + [2]) + 0.5)
            ax_split.yaxis.get_major_locator().set_params(integer=True)
            ax_link.plot(ts, [float(r["uplink_mbps"]) for r in tl], color="tab:blue", linewidth=1.2,
                         label="edge's uplink estimate")
        else:
            ax_split.text(0.5, 0.5, f"no timeline ({auto['status']})", transform=ax_split.transAxes, ha="center")
        ax_split.set_ylabel("split point")
        ax_split.set_title(f"{model} under the step drop: Tandem's partition over time")
        ax_split.grid(True, alpha=0.3)
        trace = auto.get("trace")
        horizon = max([float(r["seconds"]) for r in tl] + [1.0])
        for r in drows:
            t = timeline(out, r)
            if t:
                horizon = max(horizon, float(t[-1]["seconds"]))
        if trace and Path(trace).exists():
            pts = read_trace(trace)
            xs, ys = [], []
            for i, (t0, up, _) in enumerate(pts):
                t1 = pts[i + 1][0] if i + 1 < len(pts) else horizon
                if t0 > horizon:
                    break
                xs += [t0, min(t1, horizon)]
                ys += [up, up]
            ax_link.plot(xs, ys, color="black", linestyle="--", linewidth=1.2, label="emulated uplink (trace)")
        if trace and Path(trace).exists():
            pts = read_trace(trace)
            for (t0, up0, _), (t1, up1, _) in zip(pts, pts[1:]):
                if max(up0, up1) > 2 * min(up0, up1) and t1 <= horizon:
                    for ax in (ax_split, ax_link, ax_progress):
                        ax.axvline(t1, color="dimgray", linestyle=":", linewidth=1.2)
                    ax_link.annotate(f" uplink {up0:g} → {up1:g} Mbit/s", (t1, up1), fontsize=8, color="dimgray",
                                     va="bottom")
        ax_link.set_ylabel("uplink, Mbit/s")
        ax_link.set_yscale("log")
        ax_link.yaxis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
        ax_link.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax_link.yaxis.set_minor_formatter(ticker.NullFormatter())
        ax_link.legend(fontsize=8, loc="upper right")
        ax_link.grid(True, which="both", alpha=0.3)
        for r in ordered(drows):
            t = timeline(out, r)
            batch = number(r["batch_size"]) or 1
            if not t:
                continue
            colour, _ = STYLE.get(r["configuration"], ("tab:brown", "o"))
            label = CONFIGURATION_LABELS.get(r["configuration"], r["configuration"])
            if r["status"] != "ok":
                label += f" ({r['status']})"
            ax_progress.plot([float(x["seconds"]) for x in t], [(i + 1) * batch for i in range(len(t))],
                             color=colour, linewidth=1.4, label=label)
        ax_progress.set_ylabel("training samples done")
        ax_progress.set_xlabel("seconds since the edge trainer started")
        ax_progress.grid(True, alpha=0.3)
        ax_progress.legend(fontsize=8, loc="upper left")
        ax_progress.set_xlim(left=0)
        fig.tight_layout()
        path = dest / f"step_drop_{model}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


def make_all(out):
    """Draws every plot into OUT/plots; returns their paths."""
    out = Path(out)
    rows = load_rows(out)
    dest = out / "plots"
    dest.mkdir(parents=True, exist_ok=True)
    return accuracy_vs_time(out, rows, dest) + throughput_vs_bandwidth(out, rows, dest) + step_drop(out, rows, dest)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="the folder benchmarks/ablation.py wrote (with runs.csv)")
    args = parser.parse_args()
    for path in make_all(args.out):
        print(path)


if __name__ == "__main__":
    main()
