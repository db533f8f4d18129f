#!/usr/bin/env python3
"""The Tandem ablation suite: the real edge/cloud trainer pair on loopback with emulated
links (link.emulate.trace + rtt_ms), over

  configurations  standalone edge (the whole model on the edge, no network);
                  all-cloud (split.point 0: the edge uploads raw inputs; K = 4 pipelines the
                    uploads, there are no edge weights to go stale);
                  sync split (the model's fixed split, K = 0, no compression: JointDNN);
                  + replay (K = 4); + int8 (uplink int8); + int8 + EF (error feedback);
                  Tandem (split.point: auto, the planner picks the split and the uplink
                    codec from [none, int8], K = 4, error feedback)
  links           household IoT, 4G, Wi-Fi, 5G (benchmarks/traces/*.csv with the RTTs of
                  benchmarks/traces/README.md) and the step drop (step_drop.csv)
  models          cnn, resnet18, mobilenetv2 (configs/fashion_mnist_<model>.yaml; fixed
                  split 2 for all three, as in those configs)

Standalone does not depend on the link and runs once per model. Every run is bounded: a
run still going after --timeout seconds is interrupted (SIGTERM: the edge finishes its
step and writes a summary of the epochs it completed), killed if it does not stop, and
recorded with status `timeout` (never dropped). Each trainer gets --threads LibTorch
threads (default 1: edge and cloud share the machine without oversubscribing it, and
standalone gets the same compute as the split edge).

Profiles:
  smoke   cnn on Wi-Fi and 4G, 1 epoch of 20 batches (a minute or two: tests the driver)
  quick   cnn on all five links (2 epochs x 10 batches of 64); resnet18 and mobilenetv2
          on Wi-Fi and 5G (2 epochs x 3 / 4 batches of 32); 20 s per run; the step drop
          comes after 2 s instead of 30 s (a rewritten copy of step_drop.csv) so that
          these short runs see it. Under 15 minutes on 2 cores.
  full    every model on every link, 3 epochs x 300 batches (cnn) / 2 x 60 (resnet18) /
          2 x 100 (mobilenetv2), 40 test batches, 15 min per run: several hours (the
          split configurations on the household-IoT and 4G links of resnet18 and
          mobilenetv2 run into their limit); --resume continues an interrupted suite.

Outputs in --out: runs.csv (one row per run), results.md (Markdown tables), plots/*.png
(benchmarks/plots.py: test accuracy vs wall time, samples/s vs bandwidth, split point over
time under the step drop), runs/<model>/<link>/<configuration>/ (summaries, timeline,
decisions, logs of every run), profiles/ (the scheduler's stage-profile cache).

    /usr/bin/python3 benchmarks/ablation.py --profile quick --out /tmp/ablation-quick
    TANDEM_BUILD_DIR=/tmp/tandem-bin /usr/bin/python3 benchmarks/ablation.py --profile smoke --out /tmp/ablation-smoke
    /usr/bin/python3 benchmarks/ablation.py --profile full --out results/ablation --resume

(`/usr/bin/python3`: the Debian interpreter, which has python3-matplotlib for the plots;
the runs themselves need only the standard library, and --no-plots skips matplotlib.)
"""

import argparse
import csv
import json
import os
import re
import sys
import time
from pathlib import Path

from tandem_bench import BUILD, CLOUD, EDGE, ROOT, markdown_table, run_pair_bounded, run_standalone_bounded

TRACES = ROOT / "benchmarks" / "traces"

# name → (trace file, suggested RTT in ms: benchmarks/traces/README.md)
LINKS = {
    "household_iot": ("household_iot.csv", 60),
    "4g": ("4g.csv", 50),
    "wifi": ("wifi.csv", 10),
    "5g": ("5g.csv", 15),
    "step_drop": ("step_drop.csv", 20),
}
LINK_LABELS = {"household_iot": "household IoT", "4g": "4G", "wifi": "Wi-Fi", "5g": "5G", "step_drop": "step drop",
               "none": "—"}

# name → (config, fixed split point of the split configurations)
MODELS = {
    "cnn": ("fashion_mnist_cnn.yaml", 2),
    "resnet18": ("fashion_mnist_resnet18.yaml", 2),
    "mobilenetv2": ("fashion_mnist_mobilenetv2.yaml", 2),
}

NO_COMPRESSION = {"compression.uplink": "none", "compression.downlink": "none", "compression.error_feedback": False}


def configurations(split):
    """(name, label, kind, settings) in the order of the ablation."""
    return [
        ("standalone", "standalone edge", "standalone", {}),
        ("all_cloud", "all-cloud (p=0)", "pair", dict(NO_COMPRESSION, **{"split.point": 0, "split.staleness": 4})),
        ("sync_split", f"sync split (p={split}, K=0)", "pair",
         dict(NO_COMPRESSION, **{"split.point": split, "split.staleness": 0})),
        ("replay", "+ replay (K=4)", "pair", dict(NO_COMPRESSION, **{"split.point": split, "split.staleness": 4})),
        ("replay_int8", "+ int8", "pair",
         dict(NO_COMPRESSION, **{"split.point": split, "split.staleness": 4, "compression.uplink": "int8"})),
        ("replay_int8_ef", "+ int8 + EF", "pair",
         {"split.point": split, "split.staleness": 4, "compression.uplink": "int8", "compression.downlink": "none",
          "compression.error_feedback": True}),
        ("tandem", "Tandem (auto)", "pair",
         {"split.point": "auto", "split.staleness": 4, "scheduler.enabled": True, "scheduler.codecs": "[none,int8]",
          "compression.uplink": "none", "compression.downlink": "none", "compression.error_feedback": True}),
    ]


CONFIGURATION_NAMES = [c[0] for c in configurations(2)]
CONFIGURATION_LABELS = {name: label.replace(" (p=2, K=0)", " (K=0)") for name, label, _, _ in configurations(2)}

ALL_LINKS = list(LINKS)
PROFILES = {
    "smoke": {"models": {"cnn": ["wifi", "4g"]}, "epochs": 1, "batches": {"cnn": 20}, "batch_size": {},
              "test_batches": 2, "timeout": 60, "grace": 10, "drop_at": None},
    "quick": {"models": {"cnn": ALL_LINKS, "resnet18": ["wifi", "5g"], "mobilenetv2": ["wifi", "5g"]},
              "epochs": 2, "batches": {"cnn": 10, "resnet18": 3, "mobilenetv2": 4},
              "batch_size": {"resnet18": 32, "mobilenetv2": 32}, "test_batches": 3, "timeout": 20, "grace": 4,
              "drop_at": 2},
    "full": {"models": {m: ALL_LINKS for m in MODELS}, "epochs": {"cnn": 3, "resnet18": 2, "mobilenetv2": 2},
             "batches": {"cnn": 300, "resnet18": 60, "mobilenetv2": 100}, "batch_size": {}, "test_batches": 40,
             "timeout": 900, "grace": 60, "drop_at": None},
}

PIPELINE_COLUMNS = ["edge_compute_s", "upload_s", "cloud_compute_s", "download_s", "bottleneck",
                    "bound_samples_per_second", "achieved_ratio"]
COLUMNS = ["profile", "model", "link", "configuration", "status", "epochs", "batches", "batch_size", "wall_seconds",
           "train_samples_per_second", "final_test_accuracy", "bytes_uplink", "bytes_downlink", "split_points",
           "codecs", "repartitions", "mean_uplink_mbps", "rtt_ms"] + PIPELINE_COLUMNS + [
           "epochs_planned", "timeout_s", "note", "run_dir", "trace"]


def per_model(value, model, default=None):
    return value.get(model, default) if isinstance(value, dict) else value


# ---------------------------------------------------------------------------------------
# Traces


def read_trace(path):
    """[(time_s, uplink_mbps, downlink_mbps)] of a trace CSV (comment lines skipped)."""
    rows = []
    with open(path) as f:
        lines = [line for line in f if line.strip() and not line.startswith("#")]
    for row in csv.DictReader(lines):
        rows.append((float(row["time_s"]), float(row["uplink_mbps"]), float(row["downlink_mbps"])))
    return rows


def trace_mean(rows, horizon, column=1):
    """Time-weighted mean of a trace column over [0, horizon] s (each row holds until the next)."""
    total = 0.0
    for i, row in enumerate(rows):
        t0 = row[0]
        t1 = rows[i + 1][0] if i + 1 < len(rows) else horizon
        t0, t1 = min(t0, horizon), min(t1, horizon)
        total += max(0.0, t1 - t0) * row[column]
    return total / horizon if horizon > 0 else rows[0][column]


def prepare_traces(profile, out):
    """{link: trace path}; the step drop is moved to `drop_at` seconds when the profile asks."""
    paths = {name: TRACES / file for name, (file, _) in LINKS.items()}
    drop_at = profile.get("drop_at")
    if drop_at:
        rows = read_trace(paths["step_drop"])
        shifted = out / "traces" / f"step_drop_at_{drop_at:g}s.csv"
        shifted.parent.mkdir(parents=True, exist_ok=True)
        lines = [f"# step_drop.csv with the drop moved from {rows[-1][0]:g} s to {drop_at:g} s (ablation.py)",
                 "time_s,uplink_mbps,downlink_mbps"]
        lines += [f"{drop_at if i == len(rows) - 1 and i > 0 else t:g},{up:.3f},{down:.3f}"
                  for i, (t, up, down) in enumerate(rows)]
        shifted.write_text("\n".join(lines) + "\n")
        paths["step_drop"] = shifted
    return paths


# ---------------------------------------------------------------------------------------
# Runs


def timeline_rate(run_dir, batch_size):
    """Samples/s from timeline-edge.csv (for a run interrupted before its first epoch ended)."""
    path = Path(run_dir) / "timeline-edge.csv"
    if not path.exists():
        return None
    rows = list(csv.DictReader(open(path)))
    if len(rows) < 2:
        return None
    seconds = float(rows[-1]["seconds"]) - float(rows[0]["seconds"])
    return (len(rows) - 1) * batch_size / seconds if seconds > 0 else None


PROGRESS_LINE = re.compile(r"epoch (\d+)/(\d+)\s+\d+% (\d+)/(\d+) .*?\| (\d+(?:\.\d+)?) samples/s \|")


def progress_rate(run_dir):
    """Samples/s of the last progress line in edge.log (a run killed before writing its
    summary): the rate of the epoch it was in, as the trainer printed it."""
    path = Path(run_dir) / "edge.log"
    if not path.exists():
        return None
    matches = PROGRESS_LINE.findall(path.read_text(errors="replace"))
    if not matches:
        return None
    epoch, _, done, total, rate = matches[-1]
    return float(rate) if int(done) > 0 else None


def fmt(value, digits):
    return "" if value is None else f"{value:.{digits}f}"


EPOCH_LINE = re.compile(r"epoch (\d+)/(\d+): train loss (\S+) acc (\S+)% \| test loss (\S+) acc (\S+)% \| "
                        r"(\d+(?:\.\d+)?) samples/s \| (\d+(?:\.\d+)?) s \| split (\d+)")


def log_history(run_dir):
    """The per-epoch lines of edge.log as summary-style history records: for a run killed
    before it could write its summary."""
    path = Path(run_dir) / "edge.log"
    if not path.exists():
        return []
    history = []
    for epoch, _, train_loss, train_acc, test_loss, test_acc, rate, seconds, split in EPOCH_LINE.findall(
            path.read_text(errors="replace")):
        history.append({"epoch": int(epoch), "train_loss": float(train_loss),
                        "train_accuracy": float(train_acc) / 100, "test_loss": float(test_loss),
                        "test_accuracy": float(test_acc) / 100, "samples_per_second": float(rate),
                        "epoch_seconds": float(seconds), "split_point": int(split)})
    return history


def edge_history(run_dir):
    """(history, source): from summary-edge.json, else from edge.log."""
    path = Path(run_dir) / "summary-edge.json"
    if path.exists():
        try:
            return json.loads(path.read_text()).get("history", []), "summary"
        except ValueError:
            pass
    history = log_history(run_dir)
    return history, ("log" if history else "none")


def make_row(profile_name, model, link, configuration, result, plan, out):
    edge = result["edge"] or {}
    history = edge.get("history", [])
    notes = []
    if not edge and result["status"] != "failed":
        history = log_history(plan["run_dir"])
        if history:
            notes.append("killed before writing its summary: epochs from edge.log")
    batch_size = plan["batch_size"]
    row = {c: "" for c in COLUMNS}
    row.update(profile=profile_name, model=model, link=link, configuration=configuration, status=result["status"],
               epochs=len(history), batches=plan["batches"], batch_size=batch_size,
               mean_uplink_mbps=fmt(plan.get("mean_uplink_mbps"), 2), rtt_ms=plan.get("rtt_ms", ""),
               epochs_planned=plan["epochs"], timeout_s=f"{plan['timeout']:g}",
               run_dir=os.path.relpath(plan["run_dir"], out), trace=plan.get("trace", ""))
    row["wall_seconds"] = fmt(edge.get("wall_seconds", result["seconds"]), 2)
    if edge and history:
        sps = edge.get("train_samples_per_second")
    elif history:  # epochs of equal size: the overall rate is the harmonic mean
        sps = len(history) / sum(1.0 / h["samples_per_second"] for h in history if h["samples_per_second"] > 0)
    else:
        sps = None
    if sps is None and result["status"] != "failed":
        sps = timeline_rate(plan["run_dir"], batch_size)
        if sps is not None:
            notes.append("samples/s from the timeline (no epoch completed)")
        else:
            sps = progress_rate(plan["run_dir"])
            if sps is not None:
                notes.append("samples/s from the last progress line of edge.log (no epoch completed)")
    row["train_samples_per_second"] = fmt(sps, 1)
    if history:
        row["final_test_accuracy"] = fmt(history[-1].get("test_accuracy"), 4)
    for key in ("bytes_uplink", "bytes_downlink"):
        if key in edge:
            row[key] = edge[key]
    if edge.get("split_points"):
        row["split_points"] = " ".join(str(p) for p in edge["split_points"])
    elif history:
        row["split_points"] = " ".join(str(h["split_point"]) for h in history if "split_point" in h)
    repartitions = edge.get("repartitions", [])
    row["repartitions"] = len(repartitions) if edge else ""
    codecs = [r.get("codec") for r in repartitions if r.get("codec")]
    if not codecs and plan["kind"] == "pair" and plan["settings"].get("split.point") != 0:
        codecs = [plan["settings"].get("compression.uplink", "none")]
    row["codecs"] = " ".join(codecs)
    pipeline = edge.get("pipeline")
    if isinstance(pipeline, dict):
        for key in PIPELINE_COLUMNS:
            value = pipeline.get(key, "")
            row[key] = fmt(value, 5) if isinstance(value, float) else value
    if result["status"] == "timeout":
        planned = plan["epochs"] * plan["batches"] * batch_size
        notes.append(f"timeout after {plan['timeout']:.0f} s with {len(history)}/{plan['epochs']} epochs done "
                     f"(end to end, startup and evaluation included, slower than the "
                     f"{planned / plan['timeout']:.1f} samples/s that finish in time)")
    elif result["status"] == "failed":
        notes.append(" ".join(result["error"].split())[-300:])
    row["note"] = "; ".join(notes)
    return row


def plan_runs(args, profile, out):
    traces = prepare_traces(profile, out)
    plans = []
    for model, links in profile["models"].items():
        if args.models and model not in args.models:
            continue
        links = [link for link in links if not args.links or link in args.links]
        config_file, split = MODELS[model]
        epochs = args.epochs or per_model(profile["epochs"], model)
        batches = args.batches or per_model(profile["batches"], model)
        batch_size = per_model(profile["batch_size"], model)
        common = {"run.epochs": epochs, "data.max_train_batches": batches,
                  "data.max_test_batches": args.test_batches or profile["test_batches"], "run.threads": args.threads,
                  # K from the first step: these runs are far shorter than the default
                  # 500-step warm-up, and the ablation measures what K buys (accuracy beside it).
                  "split.staleness_warmup_steps": 0}
        if batch_size:
            common["data.batch_size"] = batch_size
        for name, label, kind, settings in configurations(split):
            if args.configurations and name not in args.configurations:
                continue
            for link in (["none"] if kind == "standalone" else links):
                run_dir = out / "runs" / model / link / name
                s = dict(common, **settings)
                plan = {"model": model, "link": link, "configuration": name, "kind": kind, "run_dir": run_dir,
                        "config": Path(args.config_dir) / config_file, "epochs": epochs, "batches": batches,
                        "batch_size": batch_size or 0, "timeout": args.timeout or profile["timeout"],
                        "grace": profile["grace"]}
                if kind == "pair":
                    trace = traces[link]
                    rtt = LINKS[link][1]
                    s.update({"link.emulate.trace": str(trace), "link.emulate.rtt_ms": rtt,
                              "link.peer_timeout_s": 120, "scheduler.profile_dir": str(out / "profiles")})
                    plan["rtt_ms"] = rtt
                    plan["trace"] = str(trace)
                    # What a run can see of the trace: its first min(timeout, 600) s.
                    plan["mean_uplink_mbps"] = trace_mean(read_trace(trace), min(plan["timeout"], 600.0))
                plan["settings"] = s
                plans.append(plan)
    return plans


def batch_size_of(plan):
    """The profile's batch size, else the config's data.batch_size (read without a YAML
    parser: the configs set it once, in flow or block style), else the default 64."""
    if plan["batch_size"]:
        return plan["batch_size"]
    m = re.search(r"\bbatch_size:\s*(\d+)", Path(plan["config"]).read_text())
    return int(m.group(1)) if m else 64


def load_previous(path, profile_name):
    if not path.exists():
        return {}
    done = {}
    for row in csv.DictReader(open(path)):
        if row.get("profile") == profile_name and row.get("status") in ("ok", "timeout"):
            done[(row["model"], row["link"], row["configuration"])] = row
    return done


def write_csv(path, rows):
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


# ---------------------------------------------------------------------------------------
# Markdown


def cell(row, key, digits, scale=1.0):
    if row is None:
        return ""
    value = row.get(key, "")
    text = f"{float(value) * scale:.{digits}f}" if value not in ("", None) else "—"
    if row["status"] == "timeout":
        return f"{text} (timeout)" if value not in ("", None) else "timeout"
    if row["status"] == "failed":
        return "failed"
    return text


def results_markdown(rows, profile_name, command, seconds, reused=0):
    lines = [f"# Tandem ablation — profile `{profile_name}`", "",
             f"`{command}`", "",
             f"{len(rows)} runs in {seconds / 60:.1f} min on {os.cpu_count()} CPUs "
             f"{f'({reused} reused from an earlier invocation) ' if reused else ''}"
             f"({time.strftime('%Y-%m-%d %H:%M')}); trainers from `{BUILD}`.", "",
             "Samples/s is the edge's training throughput (train samples / train seconds, evaluation "
             "excluded); accuracy is the test accuracy after the last completed epoch (on the capped test set). "
             "`timeout`: the run was interrupted after the per-run limit (its value, if any, covers the "
             "epochs it completed). Standalone does not use the link (same value in every column).", ""]
    models = list(dict.fromkeys(r["model"] for r in rows))
    for model in models:
        mrows = [r for r in rows if r["model"] == model]
        links = list(dict.fromkeys(r["link"] for r in mrows if r["link"] != "none"))
        first = mrows[0]
        lines += [f"## {model}", "",
                  f"{first['epochs_planned']} epoch(s) × {first['batches']} batches"
                  f"{' of ' + str(first['batch_size']) if str(first['batch_size']) not in ('', '0') else ''} per run.", ""]
        for title, key, digits, scale in (("train samples/s", "train_samples_per_second", 0, 1.0),
                                          ("final test accuracy %", "final_test_accuracy", 1, 100.0)):
            table = []
            for name in CONFIGURATION_NAMES:
                crow = [r for r in mrows if r["configuration"] == name]
                if not crow:
                    continue
                if name == "standalone":
                    table.append([CONFIGURATION_LABELS[name]] + [cell(crow[0], key, digits, scale)] * len(links))
                else:
                    by_link = {r["link"]: r for r in crow}
                    table.append([CONFIGURATION_LABELS[name]] +
                                 [cell(by_link.get(link), key, digits, scale) for link in links])
            lines += [f"**{title}**", "",
                      markdown_table(["configuration"] + [LINK_LABELS.get(l, l) for l in links], table), ""]
    detail = []
    has_pipeline = any(r.get("bottleneck") for r in rows)
    for r in rows:
        line = [r["model"], LINK_LABELS.get(r["link"], r["link"]), CONFIGURATION_LABELS[r["configuration"]],
                r["status"], r["epochs"], r["wall_seconds"], cell(r, "train_samples_per_second", 0),
                cell(r, "final_test_accuracy", 1, 100.0),
                f"{int(r['bytes_uplink']) / 2**20:.1f}" if r["bytes_uplink"] != "" else "",
                f"{int(r['bytes_downlink']) / 2**20:.1f}" if r["bytes_downlink"] != "" else "",
                r["split_points"], r["codecs"]]
        if has_pipeline:
            bound = r.get("bound_samples_per_second", "")
            ratio = r.get("achieved_ratio", "")
            line += [r.get("bottleneck", ""), f"{float(bound):.0f}" if bound != "" else "",
                     f"{float(ratio):.2f}" if ratio != "" else ""]
        detail.append(line)
    header = ["model", "link", "configuration", "status", "epochs", "wall s", "samples/s", "test acc %", "MiB up",
              "MiB down", "split points", "codecs"]
    if has_pipeline:
        header += ["bottleneck", "bound samples/s", "achieved / bound"]
    lines += ["## Every run", "", markdown_table(header, detail), ""]
    notes = [r for r in rows if r["note"]]
    if notes:
        lines += ["Notes:", ""] + [f"- {r['model']} / {r['link']} / {r['configuration']}: {r['note']}" for r in notes]
        lines.append("")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", choices=list(PROFILES), default="quick")
    parser.add_argument("--out", required=True, help="output folder (created)")
    parser.add_argument("--models", type=lambda s: s.split(","), default=None, help="comma list: only these models")
    parser.add_argument("--links", type=lambda s: s.split(","), default=None, help="comma list: only these links")
    parser.add_argument("--configurations", type=lambda s: s.split(","), default=None,
                        help="comma list of " + ", ".join(CONFIGURATION_NAMES))
    parser.add_argument("--epochs", type=int, default=None, help="override the profile's epochs")
    parser.add_argument("--batches", type=int, default=None, help="override the profile's training batches per epoch")
    parser.add_argument("--test-batches", type=int, default=None)
    parser.add_argument("--timeout", type=float, default=None, help="seconds per run (override the profile's)")
    parser.add_argument("--threads", type=int, default=1, help="LibTorch threads per trainer (run.threads)")
    parser.add_argument("--config-dir", default=str(ROOT / "configs"),
                        help="where fashion_mnist_<model>.yaml are (default: configs/)")
    parser.add_argument("--keep-going", action="store_true",
                        help="do not stop after 3 failed runs in a row (a broken build or config fails them all)")
    parser.add_argument("--resume", action="store_true",
                        help="keep the ok/timeout rows of this profile already in OUT/runs.csv; run the rest")
    parser.add_argument("--no-plots", action="store_true")
    args = parser.parse_args()
    for name, known in (("models", MODELS), ("links", LINKS), ("configurations", CONFIGURATION_NAMES)):
        unknown = [v for v in getattr(args, name) or [] if v not in known]
        if unknown:
            parser.error(f"--{name}: unknown {', '.join(unknown)} (known: {', '.join(known)})")
    for binary in (EDGE, CLOUD):
        if not os.access(binary, os.X_OK):
            parser.error(f"{binary} not found: build first (scripts/build.sh) or set TANDEM_BUILD_DIR")

    profile = PROFILES[args.profile]
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    plans = plan_runs(args, profile, out)
    previous = load_previous(out / "runs.csv", args.profile) if args.resume else {}
    command = "benchmarks/ablation.py " + " ".join(sys.argv[1:])
    print(f"ablation: profile {args.profile}, {len(plans)} runs into {out} (trainers from {BUILD})", flush=True)

    start = time.time()
    rows = []
    failures = 0
    for i, plan in enumerate(plans, 1):
        key = (plan["model"], plan["link"], plan["configuration"])
        if key in previous:
            rows.append(previous[key])
            continue
        plan["batch_size"] = batch_size_of(plan)
        t0 = time.time()
        if plan["kind"] == "standalone":
            result = run_standalone_bounded(plan["config"], plan["settings"], plan["run_dir"], plan["timeout"],
                                            grace=plan["grace"])
        else:
            result = run_pair_bounded(plan["config"], plan["settings"], plan["run_dir"], plan["timeout"],
                                      grace=plan["grace"])
        row = make_row(args.profile, *key, result, plan, out)
        rows.append(row)
        write_csv(out / "runs.csv", rows)
        print(f"[{i}/{len(plans)} {time.time() - start:6.0f} s] {plan['model']:11} {plan['link']:13} "
              f"{plan['configuration']:15} {row['status']:7} {time.time() - t0:5.1f} s  "
              f"{row['train_samples_per_second'] or '-':>7} samples/s  acc {row['final_test_accuracy'] or '-':6}  "
              f"splits {row['split_points'] or '-'}", flush=True)
        failures = failures + 1 if row["status"] == "failed" else 0
        if failures >= 3 and not args.keep_going:
            print(f"ablation: 3 runs failed in a row; stopping (--keep-going to go on). Last error:\n"
                  f"{result['error']}", file=sys.stderr, flush=True)
            return 1
    seconds = time.time() - start
    write_csv(out / "runs.csv", rows)
    reused = sum(1 for p in plans if (p["model"], p["link"], p["configuration"]) in previous)
    (out / "results.md").write_text(results_markdown(rows, args.profile, command, seconds, reused))
    print(f"ablation: {len(rows)} runs in {seconds:.0f} s; {out / 'runs.csv'}, {out / 'results.md'}", flush=True)
    if not args.no_plots:
        import plots  # matplotlib: only needed here
        for path in plots.make_all(out):
            print(f"ablation: plot {path}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
