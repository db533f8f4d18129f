#!/usr/bin/env python3
"""The Grafana dashboard and the metrics contract, checked against a real split run.

Runs a short split training (cloud_trainer + edge_trainer on loopback, synthetic data,
feature replay with K = 2, int8 uplink with error feedback, the scheduler on with a forced
re-partition, an emulated 16/64 Mbit/s link with 20 ms RTT, each trainer serving
Prometheus metrics on a free port; about 15 s) and

  1. scrapes both trainers' /metrics while they train and checks that every metric named in
     runtime/telemetry/metrics.h is exported with its labels, that every series carries
     `role` (and `edge`), and that names follow the Prometheus conventions (`tandem_`
     prefix, `_total` exactly on counters, base units);
  2. unless --no-prometheus: starts a real Prometheus (Debian package `prometheus`) on
     127.0.0.1 with a temporary storage dir, scraping both trainers every second, and
     evaluates every PromQL expression of scripts/grafana/tandem-dashboard.json through the
     HTTP API (query_range over the run, step 1 s, Grafana variables substituted:
     $__rate_interval → 30s, $__interval → 15s, label variables → .*). An expression fails
     when it errors, returns no series, or returns only NaN. The variables' label_values()
     queries must return values too. Static checks come first: every panel uses the
     `${datasource}` variable, every tandem_ name the dashboard uses exists in metrics.h,
     and every metric of metrics.h is plotted.

Every failure is listed, then the script exits 1. Without Prometheus installed it fails
(scripts/setup.sh installs it) rather than skipping. Everything runs on loopback with
ephemeral ports, every wait has a timeout, and the whole run is bounded by --timeout.

    /usr/bin/python3 tests/integration/prometheus_dashboard_test.py \\
        --edge build/trainers/edge_trainer --cloud build/trainers/cloud_trainer \\
        [--dashboard scripts/grafana/tandem-dashboard.json] [--no-prometheus] [--keep DIR]

Standard library only.
"""

import argparse
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent

# Grafana's built-in variables and what stands in for them when the test queries Prometheus.
BUILTIN_VARIABLES = {"__rate_interval": "30s", "__interval": "15s", "__range": "60s", "__range_s": "60",
                     "__interval_ms": "15000", "__range_ms": "60000"}
# Name suffixes of non-base units (Prometheus naming conventions: seconds, bytes, ratios).
NON_BASE_UNITS = ("_ms", "_milliseconds", "_us", "_microseconds", "_ns", "_nanoseconds", "_minutes", "_hours",
                  "_kb", "_mb", "_gb", "_kib", "_mib", "_gib", "_kilobytes", "_megabytes", "_bits", "_percent")
# Label values that runtime/telemetry/metrics.h enumerates in its prose (the dashboard's
# legends and the README rely on them); every one must be exported.
LABEL_VALUES = {
    ("tandem_link_bytes_total", "direction"): {"uplink", "downlink"},
    ("tandem_phase_seconds", "phase"): {"edge_forward", "edge_replay_backward", "cloud_step", "encode", "decode"},
    ("tandem_errors_total", "kind"): {"rejected", "timeout", "reconnect", "protocol"},
}
# Families the prometheus-cpp exposer adds by itself (not Tandem's to name).
LIBRARY_PREFIXES = ("exposer_",)
# The standard process metrics (Prometheus client guidelines; metrics.h lists them): their
# names are the standard ones and they carry no labels.
STANDARD_PROCESS_FAMILIES = {"process_cpu_seconds_total", "process_resident_memory_bytes",
                             "process_virtual_memory_bytes", "process_open_fds", "process_max_fds",
                             "process_start_time_seconds", "process_threads"}
# Tandem families of the process rather than of an edge (metrics.h): `role` but no `edge`.
PER_PROCESS_FAMILIES = {"tandem_build_info", "tandem_limit_hits_total", "tandem_fleet_edges", "tandem_fleet_rounds_total",
                        "tandem_fleet_step_batches"}


class Deadline(Exception):
    pass


def log(message):
    print(f"[prometheus_dashboard_test] {message}", flush=True)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url, timeout=5.0):
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read().decode("utf-8", "replace")


# ---------------------------------------------------------------------------------------
# The contract: runtime/telemetry/metrics.h


def read_contract(header):
    """{name: {"histogram": bool, "labels": [..]}} from the comment block at the top of
    metrics.h (the first run of // lines; later comments are not the list)."""
    contract = {}
    entry = re.compile(r"(tandem_[a-z0-9_]+)(\{([^}]*)\})?(\s*\(histogram\))?")
    started = False
    for line in Path(header).read_text().splitlines():
        line = line.strip()
        if not line.startswith("//"):
            if started:
                break
            continue
        started = True
        for name, _, labels, histogram in entry.findall(line):
            labels = [label.strip() for label in labels.split(",") if label.strip()]
            contract[name] = {"histogram": bool(histogram), "labels": labels}
    if not contract:
        raise SystemExit(f"FAIL: found no tandem_ metric names in the comment block of {header}")
    return contract


# ---------------------------------------------------------------------------------------
# The Prometheus text format


def parse_exposition(text):
    """(types {family: type}, samples [(name, {label: value}, value)])."""
    types, samples = {}, []
    label_re = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        if line.startswith("#"):
            parts = line.split()
            if len(parts) >= 4 and parts[1] == "TYPE":
                types[parts[2]] = parts[3]
            continue
        m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)", line)
        if not m:
            continue
        labels = dict(label_re.findall(m.group(3) or ""))
        samples.append((m.group(1), labels, m.group(4)))
    return types, samples


def family_of(sample_name, types):
    if sample_name in types:
        return sample_name
    for suffix in ("_bucket", "_sum", "_count"):
        if sample_name.endswith(suffix) and types.get(sample_name[: -len(suffix)]) in ("histogram", "summary"):
            return sample_name[: -len(suffix)]
    return sample_name


def check_exposition(text, role, contract):
    """Problems with one trainer's /metrics text."""
    problems = []
    types, samples = parse_exposition(text)
    by_family = {}
    for name, labels, value in samples:
        by_family.setdefault(family_of(name, types), []).append((name, labels, value))

    for name in sorted(STANDARD_PROCESS_FAMILIES - set(types)):
        problems.append(f"{role}: standard process metric {name} is not exported")
    for family, kind in sorted(types.items()):
        if family.startswith(LIBRARY_PREFIXES):
            continue
        if family in STANDARD_PROCESS_FAMILIES:
            if kind == "counter" and not family.endswith("_total"):
                problems.append(f"{role}: counter {family} does not end in _total")
            continue
        if not re.fullmatch(r"tandem_[a-z0-9]+(_[a-z0-9]+)*", family):
            problems.append(f"{role}: metric {family!r} does not follow tandem_snake_case")
        if kind == "counter" and not family.endswith("_total"):
            problems.append(f"{role}: counter {family} does not end in _total")
        if kind != "counter" and family.endswith("_total"):
            problems.append(f"{role}: {kind} {family} ends in _total (reserved for counters)")
        if family.endswith(NON_BASE_UNITS):
            problems.append(f"{role}: {family} is not in base units (seconds, bytes, ratios)")
        if family.startswith("tandem_") and family not in contract:
            problems.append(f"{role}: {family} is exported but not listed in runtime/telemetry/metrics.h")

    for family, series in sorted(by_family.items()):
        if family.startswith(LIBRARY_PREFIXES):
            continue
        if family in STANDARD_PROCESS_FAMILIES:
            for name, labels, value in series:
                if labels:
                    problems.append(f"{role}: {name} has labels {labels}; standard process metrics have none")
                if value.lower() == "nan":
                    problems.append(f"{role}: {name} is NaN")
            continue
        for name, labels, _ in series:
            if labels.get("role") != role:
                problems.append(f"{role}: {name}{{{','.join(f'{k}={v!r}' for k, v in labels.items())}}} "
                                f"has role={labels.get('role')!r}, expected {role!r}")
                break
            if "edge" not in labels and family not in PER_PROCESS_FAMILIES:
                problems.append(f"{role}: {name} has no `edge` label")
                break

    for name, spec in sorted(contract.items()):
        kind = types.get(name)
        series = by_family.get(name, [])
        if kind is None:
            problems.append(f"{role}: {name} (metrics.h) is not exported")
            continue
        if not series:
            problems.append(f"{role}: {name} is declared (# TYPE) but has no series")
            continue
        if spec["histogram"]:
            if kind != "histogram":
                problems.append(f"{role}: {name} is a {kind}, metrics.h says histogram")
            names = {s[0] for s in series}
            for suffix in ("_bucket", "_sum", "_count"):
                if name + suffix not in names:
                    problems.append(f"{role}: histogram {name} has no {name + suffix} series")
            if not any("le" in s[1] for s in series if s[0] == name + "_bucket"):
                problems.append(f"{role}: histogram {name}_bucket has no `le` label")
        elif kind == "histogram":
            problems.append(f"{role}: {name} is a histogram, metrics.h does not say so")
        for label in spec["labels"]:
            if not any(label in s[1] for s in series):
                problems.append(f"{role}: {name} has no `{label}` label (metrics.h: {name}{{{label}}})")
            missing = LABEL_VALUES.get((name, label), set()) - {s[1].get(label) for s in series}
            if missing:
                problems.append(f"{role}: {name} has no series with {label}={', '.join(sorted(missing))}")
    return problems


# ---------------------------------------------------------------------------------------
# The dashboard


def walk_panels(panels):
    for panel in panels or []:
        yield panel
        yield from walk_panels(panel.get("panels"))


def dashboard_queries(dashboard):
    """[(panel title, refId, expr)] of every Prometheus target."""
    out = []
    for panel in walk_panels(dashboard.get("panels")):
        for target in panel.get("targets") or []:
            expr = target.get("expr")
            if expr is not None:
                out.append((panel.get("title", "?"), target.get("refId", "?"), expr))
    return out


def label_variables(dashboard):
    return [v for v in dashboard.get("templating", {}).get("list", []) if v.get("type") in ("query", "custom",
                                                                                              "textbox", "constant")]


def substitute(expr, variables):
    """The expression as Grafana would send it, with label variables matching everything."""

    def replace(m):
        name = m.group(1) or m.group(2)
        if name in BUILTIN_VARIABLES:
            return BUILTIN_VARIABLES[name]
        if name in variables:
            return ".*"
        return m.group(0)

    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", replace, expr)


def static_checks(dashboard, contract):
    problems = []
    if not isinstance(dashboard.get("schemaVersion"), int):
        problems.append("dashboard: no schemaVersion")
    if dashboard.get("id") not in (None,):
        problems.append("dashboard: `id` should be null so that it imports as a new dashboard")
    templating = dashboard.get("templating", {}).get("list", [])
    ds = [v for v in templating if v.get("type") == "datasource"]
    if not ds or ds[0].get("query") != "prometheus":
        problems.append("dashboard: no datasource variable of type `datasource` with query `prometheus`")
    ds_name = ds[0]["name"] if ds else "datasource"
    wanted = {f"${{{ds_name}}}", f"${ds_name}"}

    def uses_variable(datasource):
        if isinstance(datasource, dict):
            return datasource.get("uid") in wanted
        return isinstance(datasource, str) and datasource in wanted

    for panel in walk_panels(dashboard.get("panels")):
        if panel.get("type") == "row":
            continue
        title = panel.get("title", "?")
        if not uses_variable(panel.get("datasource")):
            problems.append(f"panel {title!r}: datasource is {panel.get('datasource')!r}, not ${{{ds_name}}}")
        targets = panel.get("targets") or []
        if not targets:
            problems.append(f"panel {title!r}: no queries")
        for target in targets:
            if "datasource" in target and not uses_variable(target["datasource"]):
                problems.append(f"panel {title!r} {target.get('refId')}: datasource is not ${{{ds_name}}}")
            if not (target.get("expr") or "").strip():
                problems.append(f"panel {title!r} {target.get('refId')}: empty expression")
    for v in templating:
        if v.get("type") == "query" and not uses_variable(v.get("datasource")):
            problems.append(f"variable {v.get('name')}: datasource is not ${{{ds_name}}}")

    variables = {v["name"] for v in label_variables(dashboard)}
    known = set()
    for name, spec in contract.items():
        known.add(name)
        if spec["histogram"]:
            known.update({name + "_bucket", name + "_sum", name + "_count"})
    used = set()
    for title, ref, expr in dashboard_queries(dashboard):
        for name in re.findall(r"\btandem_[a-z0-9_]+", expr):
            used.add(name)
            if name not in known:
                problems.append(f"panel {title!r} {ref}: {name} is not a metric of runtime/telemetry/metrics.h")
        for var in variables:
            if re.search(r'[^=!~]=\s*"\$\{?' + var + r"\b", expr) or re.search(r'!=\s*"\$\{?' + var + r"\b", expr):
                problems.append(f"panel {title!r} {ref}: ${var} must be matched with =~ (it may hold several values)")
    for name, spec in sorted(contract.items()):
        names = {name} | ({name + "_bucket", name + "_sum", name + "_count"} if spec["histogram"] else set())
        if not names & used:
            problems.append(f"dashboard: {name} (metrics.h) is not plotted by any panel")
    return problems


# ---------------------------------------------------------------------------------------
# Processes


class Processes:
    """Children of the test, stopped (SIGTERM, then SIGKILL) on exit."""

    def __init__(self):
        self.children = []

    def start(self, name, cmd, log_path):
        handle = open(log_path, "w")
        proc = subprocess.Popen(cmd, stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.children.append((name, proc, handle, log_path))
        return proc

    def stop_all(self):
        for name, proc, handle, _ in reversed(self.children):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=5)
            handle.close()

    def tail(self, name, lines=40):
        for n, _, handle, path in self.children:
            if n == name:
                handle.flush()
                text = Path(path).read_text(errors="replace").splitlines()
                return "\n".join(text[-lines:])
        return ""


def wait_for(predicate, timeout, what, interval=0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


RUN_CONFIG = """\
# Written by tests/integration/prometheus_dashboard_test.py
run: {{name: prometheus_dashboard_test, seed: 1, epochs: {epochs}, output_dir: "{out}"}}
data:
  dataset: synthetic
  batch_size: 32
  max_train_batches: {batches}
  max_test_batches: 4
  synthetic: {{train_size: 4096, test_size: 256, channels: 1, height: 16, width: 16, num_classes: 10, noise: 1.0}}
model: {{name: cnn}}
optimizer: {{name: sgd, lr: 0.02, momentum: 0.9}}
split: {{point: 2, staleness: 2}}
compression: {{uplink: int8, downlink: none, error_feedback: true}}
# The scheduler profiles, estimates the link and plans (advice only with a fixed split);
# the forced split schedule moves a stage at epoch 2 and back at epoch 3, so that the
# re-partition and migration series have something to show.
scheduler: {{enabled: true, codecs: [none, int8], profile_dir: "{profiles}", split_schedule: {{1: 1, 2: 2}}}}
link:
  endpoint: "tcp://127.0.0.1:*"
  connect_timeout_s: 20
  peer_timeout_s: 15
  emulate: {{uplink_mbps: {uplink}, downlink_mbps: {downlink}, rtt_ms: 20}}
security: {{mode: plaintext}}  # loopback only
"""


def run_split(args, tmp, procs, edge_port, cloud_port, contract):
    """Runs the pair to completion while scraping both /metrics endpoints; returns
    (start time, end time, problems with the scrapes)."""
    out = tmp / "run"
    config = tmp / "run.yaml"
    config.write_text(RUN_CONFIG.format(epochs=args.epochs, batches=args.batches, out=out, profiles=tmp / "profiles",
                                        uplink=args.uplink_mbps, downlink=4 * args.uplink_mbps))
    endpoint_file = tmp / "endpoint"
    start = time.time()
    cloud = procs.start("cloud", [args.cloud, "--config", str(config), "--endpoint-file", str(endpoint_file),
                                  "--set", f"metrics.port={cloud_port}", "--log-format", "text"], tmp / "cloud.log")

    def endpoint():
        if cloud.poll() is not None:
            raise RuntimeError(f"cloud_trainer exited {cloud.returncode} before listening:\n{procs.tail('cloud')}")
        return endpoint_file.exists() and endpoint_file.read_text().strip()

    address = wait_for(endpoint, 30, "cloud_trainer to write its endpoint")
    edge = procs.start("edge", [args.edge, "--config", str(config), "--set", f"link.endpoint={address}",
                                "--set", f"metrics.port={edge_port}", "--log-format", "text"], tmp / "edge.log")

    scrapes = {"edge": None, "cloud": None}
    edge_deadline = time.monotonic() + args.run_timeout
    while edge.poll() is None:
        if time.monotonic() > edge_deadline:
            raise TimeoutError(f"edge_trainer still running after {args.run_timeout:.0f} s:\n{procs.tail('edge')}")
        for role, port in (("edge", edge_port), ("cloud", cloud_port)):
            try:
                text = http_get(f"http://127.0.0.1:{port}/metrics", timeout=2)
                if "tandem_" in text and ("role=" in text):
                    scrapes[role] = text
            except (urllib.error.URLError, OSError, ConnectionError):
                pass
        time.sleep(0.5)
    end = time.time()
    if edge.returncode != 0:
        raise RuntimeError(f"edge_trainer exited {edge.returncode}:\n{procs.tail('edge')}")
    try:
        cloud.wait(timeout=30)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"cloud_trainer did not exit 30 s after the edge:\n{procs.tail('cloud')}")
    if cloud.returncode != 0:
        raise RuntimeError(f"cloud_trainer exited {cloud.returncode}:\n{procs.tail('cloud')}")
    log(f"split run finished in {end - start:.1f} s")
    summary = json.loads((out / "summary-edge.json").read_text())
    log(f"edge summary: epochs {summary.get('epochs')}, split points {summary.get('split_points')}, "
        f"re-partitions {len(summary.get('repartitions', []))}, "
        f"test accuracy {summary.get('final_test_accuracy')}")

    problems = []
    for role, text in scrapes.items():
        if text is None:
            problems.append(f"{role}: /metrics was never reachable (metrics.port set with --set)")
            continue
        (tmp / f"metrics-{role}.txt").write_text(text)
        problems += check_exposition(text, role, contract)
    return start, end, problems


# ---------------------------------------------------------------------------------------
# Prometheus


PROMETHEUS_CONFIG = """\
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: tandem
    static_configs:
      - targets: ["127.0.0.1:{edge}", "127.0.0.1:{cloud}"]
"""


def find_prometheus(explicit):
    for candidate in ([explicit] if explicit else []) + [shutil.which("prometheus"), "/usr/bin/prometheus"]:
        if candidate and not candidate.endswith("NOTFOUND") and os.access(candidate, os.X_OK):
            return candidate
    return None


def start_prometheus(binary, tmp, procs, edge_port, cloud_port):
    port = free_port()
    config = tmp / "prometheus.yml"
    config.write_text(PROMETHEUS_CONFIG.format(edge=edge_port, cloud=cloud_port))
    proc = procs.start("prometheus", [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp / 'tsdb'}",
                                      f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn",
                                      "--storage.tsdb.retention.time=1h"], tmp / "prometheus.log")
    base = f"http://127.0.0.1:{port}"

    def ready():
        if proc.poll() is not None:
            raise RuntimeError(f"prometheus exited {proc.returncode}:\n{procs.tail('prometheus')}")
        try:
            return "Ready" in http_get(base + "/-/ready", timeout=1)
        except (urllib.error.URLError, OSError, ConnectionError):
            return False

    wait_for(ready, 30, f"prometheus to be ready on {base}", interval=0.2)

    # Prometheus hands discovered targets to its scrape loops up to 5 s after start; start
    # the run only when both targets are known, so that it is scraped from its first second.
    def discovered():
        try:
            targets = api(base, "/api/v1/targets", {"state": "active"}).get("activeTargets", [])
        except (ValueError, urllib.error.URLError, OSError):
            return False
        return len(targets) >= 2

    wait_for(discovered, 30, "prometheus to pick up its two scrape targets", interval=0.2)
    return base


def api(base, path, params):
    url = f"{base}{path}?{urllib.parse.urlencode(params, doseq=True)}"
    try:
        body = http_get(url, timeout=10)
    except urllib.error.HTTPError as e:
        body = e.read().decode("utf-8", "replace")
    reply = json.loads(body)
    if reply.get("status") != "success":
        raise ValueError(f"{reply.get('errorType')}: {reply.get('error')}")
    return reply["data"]


def has_values(result):
    for series in result:
        for _, value in series.get("values", []) + ([series["value"]] if "value" in series else []):
            v = float(value)
            if not math.isnan(v) and not math.isinf(v):
                return True
    return False


def check_queries(base, dashboard, start, end):
    variables = {v["name"] for v in label_variables(dashboard)}
    problems, rows = [], []
    for title, ref, expr in dashboard_queries(dashboard):
        query = substitute(expr, variables)
        try:
            data = api(base, "/api/v1/query_range", {"query": query, "start": f"{start:.3f}", "end": f"{end:.3f}",
                                                      "step": "1"})
            result = data.get("result", [])
            if not result:
                verdict = "no data"
            elif not has_values(result):
                verdict = "only NaN"
            else:
                verdict = "ok"
        except ValueError as e:
            verdict = f"error: {e}"
            result = []
        rows.append((verdict, title, ref, len(result)))
        if verdict != "ok":
            problems.append(f"panel {title!r} {ref}: {verdict}\n    {query}")
    for v in label_variables(dashboard):
        query = v.get("query")
        definition = v.get("definition") or (query.get("query") if isinstance(query, dict) else query)
        m = re.fullmatch(r"\s*label_values\((?:(.*),)?\s*(\w+)\s*\)\s*", definition or "")
        if not m:
            continue
        params = {"start": f"{start:.3f}", "end": f"{end:.3f}"}
        if m.group(1):
            params["match[]"] = substitute(m.group(1).strip(), variables)
        try:
            values = api(base, f"/api/v1/label/{m.group(2)}/values", params)
        except ValueError as e:
            problems.append(f"variable {v['name']}: {definition}: error: {e}")
            continue
        rows.append(("ok" if values else "no data", f"variable {v['name']}", "", len(values)))
        if not values:
            problems.append(f"variable {v['name']}: {definition} returns no values")
    for verdict, title, ref, n in rows:
        log(f"  {verdict:8} {n:3} series  {title} {ref}")
    return problems


# ---------------------------------------------------------------------------------------


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--edge", required=True, help="edge_trainer binary")
    parser.add_argument("--cloud", required=True, help="cloud_trainer binary")
    parser.add_argument("--dashboard", default=str(ROOT / "scripts" / "grafana" / "tandem-dashboard.json"))
    parser.add_argument("--metrics-header", default=str(ROOT / "runtime" / "telemetry" / "metrics.h"))
    parser.add_argument("--prometheus", default=None, help="prometheus binary (default: on PATH, /usr/bin)")
    parser.add_argument("--no-prometheus", action="store_true",
                        help="only check the trainers' /metrics and the dashboard's static contract")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batches", type=int, default=60, help="training batches per epoch")
    parser.add_argument("--uplink-mbps", type=float, default=16.0, help="emulated uplink (downlink: 4x)")
    parser.add_argument("--run-timeout", type=float, default=60.0, help="limit on the split run, seconds")
    parser.add_argument("--timeout", type=float, default=85.0, help="limit on the whole test, seconds")
    parser.add_argument("--keep", default=None, help="keep logs, configs and scrapes in this folder")
    args = parser.parse_args()

    for name in ("edge", "cloud"):
        path = getattr(args, name)
        if not os.access(path, os.X_OK):
            print(f"FAIL: --{name} {path}: not an executable file", flush=True)
            return 1
    prometheus = None
    if not args.no_prometheus:
        prometheus = find_prometheus(args.prometheus)
        if prometheus is None:
            print("FAIL: the prometheus binary was not found (looked for --prometheus, `prometheus` on PATH and "
                  "/usr/bin/prometheus). Install the Debian package `prometheus`: scripts/setup.sh does "
                  "(or apt-get install prometheus).", flush=True)
            return 1

    contract = read_contract(args.metrics_header)
    dashboard = json.loads(Path(args.dashboard).read_text())
    log(f"{len(contract)} metrics in {args.metrics_header}; {len(dashboard_queries(dashboard))} queries in "
        f"{args.dashboard}")
    problems = static_checks(dashboard, contract)

    def on_alarm(signum, frame):
        raise Deadline(f"the test ran past --timeout {args.timeout:.0f} s")

    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(int(math.ceil(args.timeout)))
    procs = Processes()
    tmp = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="tandem-prometheus-test-"))
    tmp.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    try:
        edge_port, cloud_port = free_port(), free_port()
        while cloud_port == edge_port:
            cloud_port = free_port()
        base = start_prometheus(prometheus, tmp, procs, edge_port, cloud_port) if prometheus else None
        if base:
            log(f"prometheus ready at {base} after {time.monotonic() - t0:.1f} s")
        start, end, scrape_problems = run_split(args, tmp, procs, edge_port, cloud_port, contract)
        problems += scrape_problems
        if base:
            # Let the last scrapes land, then query the whole run (from a little before it).
            time.sleep(2.5)
            problems += check_queries(base, dashboard, start - 1, end + 2)
    except (Deadline, TimeoutError, RuntimeError) as e:
        problems.append(f"run: {e}")
    finally:
        signal.alarm(0)
        procs.stop_all()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)

    log(f"took {time.monotonic() - t0:.1f} s")
    if problems:
        print(f"FAIL: {len(problems)} problem(s):", flush=True)
        for p in problems:
            print(f"  - {p}", flush=True)
        return 1
    print("PASS: every metric of metrics.h is exported with its labels"
          + ("" if args.no_prometheus else ", and every dashboard query returns data"), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
