"""Print a training run's ``metrics.jsonl`` as a Markdown table, epoch by epoch (for benchmarks/RESULTS.md).

    python -m benchmarks.run_table runs/mnist-improved/metrics.jsonl
    python -m benchmarks.run_table runs/mnist-improved/metrics.jsonl --every 10   # every 10th epoch, and the last

Every number comes from the log as written; the summary line names the best epoch of each accuracy
column and the last one.
"""
from __future__ import annotations

import argparse
import json
import sys

COLUMNS = (("test_acc", "test acc (raw)", "pct"), ("test_acc_ema", "test acc (averaged)", "pct"),
           ("test_acc_recal", "raw, recalibrated", "pct"), ("test_acc_ema_recal", "averaged, recalibrated", "pct"),
           ("train_acc", "labeled train acc", "pct"), ("d_loss_class", "class loss", "f4"),
           ("d_loss_real", "unlabeled loss", "f4"), ("d_loss_fake", "fake loss", "f4"), ("g_loss", "g loss", "f3"),
           ("seconds", "s/epoch", "f0"))


def _fmt(value, kind):
    if value is None:
        return "-"
    return {"pct": f"{100 * value:.2f}%", "f4": f"{value:.4f}", "f3": f"{value:.3f}", "f0": f"{value:.0f}"}[kind]


def table(records, every=1) -> str:
    records = [r for r in records if r.get("epoch_complete", True)]
    used = [c for c in COLUMNS if any(r.get(c[0]) is not None for r in records)]
    shown = [r for i, r in enumerate(records) if (i + 1) % every == 0 or i in (0, len(records) - 1)]
    lines = ["| epoch | " + " | ".join(c[1] for c in used) + " |",
             "|---:|" + "---:|" * len(used)]
    lines += [f"| {r['epoch']} | " + " | ".join(_fmt(r.get(c[0]), c[2]) for c in used) + " |" for r in shown]
    notes = []
    for key, name, _ in [c for c in used if c[0].startswith("test_acc")]:
        vals = [(r[key], r["epoch"]) for r in records if r.get(key) is not None]
        if vals:
            best = max(vals)
            notes.append(f"{name}: best {100 * best[0]:.2f}% (epoch {best[1]}), last {100 * vals[-1][0]:.2f}% "
                         f"(epoch {vals[-1][1]})")
    return "\n".join(lines) + ("\n\n" + "; ".join(notes) if notes else "")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.run_table", description=__doc__.splitlines()[0])
    p.add_argument("metrics", help="a metrics.jsonl written by python -m ssgan.train")
    p.add_argument("--every", type=int, default=1, help="show every N-th epoch (and the first and last)")
    args = p.parse_args(argv)
    with open(args.metrics) as f:
        records = [json.loads(line) for line in f if line.strip()]
    print(table(records, max(1, args.every)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
