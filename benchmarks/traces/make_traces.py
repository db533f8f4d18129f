#!/usr/bin/env python3
"""Writes the bandwidth traces in this folder (deterministic: fixed seeds). Each trace is a
CSV `time_s,uplink_mbps,downlink_mbps`, one row per interval; README.md documents the
parameters. Rerun after changing a parameter:  benchmarks/traces/make_traces.py"""

import math
import random
from pathlib import Path

HERE = Path(__file__).resolve().parent

# name: (seconds, interval_s, uplink mean, uplink relative jitter, downlink mean, downlink jitter,
#        slow-fade period s, fade depth, seed)
TRACES = {
    "household_iot": (600, 2.0, 2.0, 0.35, 12.0, 0.25, 120.0, 0.30, 1),
    "4g": (600, 1.0, 8.0, 0.40, 35.0, 0.35, 60.0, 0.45, 2),
    "wifi": (600, 1.0, 60.0, 0.25, 120.0, 0.20, 90.0, 0.25, 3),
    "5g": (600, 0.5, 150.0, 0.30, 600.0, 0.30, 45.0, 0.35, 4),
}


def write(name, rows, comment):
    with open(HERE / f"{name}.csv", "w") as f:
        f.write(f"# {comment}\n")
        f.write("time_s,uplink_mbps,downlink_mbps\n")
        for t, up, down in rows:
            f.write(f"{t:g},{up:.3f},{down:.3f}\n")


def fluctuating(seconds, interval, up, up_jitter, down, down_jitter, period, depth, seed):
    rng = random.Random(seed)
    rows = []
    t = 0.0
    while t < seconds:
        fade = 1.0 - depth * 0.5 * (1.0 + math.sin(2.0 * math.pi * t / period))
        u = max(0.05 * up, up * fade * rng.lognormvariate(0.0, up_jitter))
        d = max(0.05 * down, down * fade * rng.lognormvariate(0.0, down_jitter))
        rows.append((round(t, 3), u, d))
        t += interval
    return rows


def main():
    for name, params in TRACES.items():
        seconds, interval, up, uj, down, dj, period, depth, seed = params
        write(name, fluctuating(*params),
              f"{name}: uplink ~{up} Mbit/s (jitter {uj}), downlink ~{down} Mbit/s (jitter {dj}), "
              f"fade period {period} s depth {depth}, step {interval} s, seed {seed}; make_traces.py")
    write("step_drop", [(0, 50.0, 100.0), (30, 5.0, 20.0)],
          "step_drop: 50/100 Mbit/s, dropping to 5/20 Mbit/s at t = 30 s; make_traces.py")


if __name__ == "__main__":
    main()
