#!/usr/bin/env python3
"""Draws the results `make bench` leaves as JSON (bench/src/lib.rs, `save`) as PNG plots:

  cpu-per-record.png  owod's CPU time per record against the record rate (cpu-curve), with its
                      share of one CPU on a second axis;
  latency.png         event-to-line latency percentiles, idle and under a flood (latency).

Usage: plot.py RESULTS_DIR OUT_DIR. Uses Debian's python3-matplotlib."""
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

PERCENTILES = [50, 75, 90, 95, 99, 99.9, 100]


def load(results, name):
    with open(os.path.join(results, f"{name}.json"), encoding="utf-8") as f:
        return json.load(f)


def cpu_per_record(results, out):
    data = load(results, "cpu-per-record")
    points = [p for p in data["points"] if p["records"] > 0]
    rates = [p["rate_reached"] for p in points]
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    ax.plot(rates, [p["cpu_per_record_us"] for p in points], "o-", color="tab:blue",
            label="CPU per record (µs)")
    ax.set_xscale("log")
    ax.set_xlabel("records per second")
    ax.set_ylabel("owod CPU per record (µs)", color="tab:blue")
    ax.set_ylim(bottom=0)
    share = ax.twinx()
    share.plot(rates, [100 * p["owod_cpu_seconds"] / p["seconds"] for p in points], "s--",
               color="tab:orange", label="owod CPU (% of one core)")
    share.set_ylabel("owod CPU (% of one core)", color="tab:orange")
    share.set_ylim(bottom=0)
    for p in points:
        if p["lost"]:
            ax.annotate(f"{p['lost']} lost", (p["rate_reached"], p["cpu_per_record_us"]),
                        textcoords="offset points", xytext=(0, 8), ha="center", color="red")
    ax.set_title(f"owod: CPU per record vs record rate ({data['workload']})", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "cpu-per-record.png"))
    plt.close(fig)


def latency(results, out):
    data = load(results, "latency")
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    for series in data["series"]:
        ms = sorted(series["ms"])
        if not ms:
            continue
        values = [ms[min(len(ms) - 1, round((len(ms) - 1) * q / 100))] for q in PERCENTILES]
        ax.plot(range(len(PERCENTILES)), values, "o-", label=series["label"])
    ax.set_xticks(range(len(PERCENTILES)), [f"p{q:g}" if q < 100 else "max" for q in PERCENTILES])
    ax.set_ylabel("ms")
    ax.set_ylim(bottom=0)
    ax.set_title(f"owod: event-to-line latency ({data['what']})", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(out, "latency.png"))
    plt.close(fig)


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    results, out = sys.argv[1:]
    os.makedirs(out, exist_ok=True)
    cpu_per_record(results, out)
    latency(results, out)
    print(f"plots: {out}/cpu-per-record.png, {out}/latency.png")


if __name__ == "__main__":
    main()
