"""EMA loss per UID over the steps of an `axon validate --log-csv` file, as a PNG (scripts/plot-validation)."""
import csv
import pathlib
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit("usage: scripts/plot-validation steps.csv [out.png]")
    source = pathlib.Path(sys.argv[1])
    out = pathlib.Path(sys.argv[2]) if len(sys.argv) == 3 else source.with_suffix(".png")
    series = {}
    with source.open() as f:
        for row in csv.DictReader(f):
            if row["ema_loss"]:
                series.setdefault(int(row["uid"]), []).append((int(row["step"]), float(row["ema_loss"])))
    if not series:
        sys.exit(f"{source} has no rows with an EMA loss")
    fig, ax = plt.subplots(figsize=(9, 5))
    for uid, points in sorted(series.items()):
        steps, emas = zip(*points)
        ax.plot(steps, emas, marker="." if len(points) < 60 else None, label=f"uid {uid}")
    ax.set_xlabel("step")
    ax.set_ylabel("EMA phrase loss (nats)")
    ax.set_yscale("log")
    ax.set_title(f"axon validate: EMA loss per UID ({source.name})")
    if len(series) <= 20:
        ax.legend(fontsize="small")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
