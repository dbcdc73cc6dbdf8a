"""Output pages: ``<out>/<name>.csv``, ``.md`` and ``.png``, each written atomically, and the
provenance lines (command, machine, date, commit) every Markdown page starts with."""

from __future__ import annotations

import csv
import datetime as _dt
import io
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Iterable, Mapping, NamedTuple, Sequence

import numpy as np

from benchmarks.harness.cli import REPO
from featpipe.fileio import atomic_write

# --------------------------------------------------------------------------- provenance


def machine() -> str:
    """``lscpu`` model name and core count (Python's platform info where lscpu is missing)."""
    model = platform.processor() or platform.machine()
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        model = next((line.split(":", 1)[1].strip() for line in out.splitlines()
                      if line.startswith("Model name")), model)
    except (OSError, subprocess.CalledProcessError):
        pass
    return f"{model}, {os.cpu_count()} cores"


def today() -> str:
    return _dt.date.today().isoformat()


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                             capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "featpipe"], cwd=REPO,
                               capture_output=True, text=True, check=True).stdout.strip()
        return out + ("+dirty featpipe/" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def command_line(module: str, argv: Sequence[str]) -> str:
    return " ".join(["python -m", module, *map(shlex.quote, argv)])


def provenance(module: str, argv: Sequence[str], machine_note: str = "") -> list[str]:
    """The ``- Command``, ``- Machine`` and ``- Date`` lines of a result page."""
    return [f"- Command: `{command_line(module, argv)}`",
            f"- Machine: {machine()} (no GPU){machine_note}",
            f"- Date: {today()}; featpipe commit `{git_commit()}`"]


# --------------------------------------------------------------------------- files


class Outputs(NamedTuple):
    """The files of one result page."""

    csv: Path
    md: Path
    png: Path


def outputs(args, name: str) -> Outputs:
    """``(<out>/<name>.csv, .md, .png)``, creating ``<out>``."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    return Outputs(out / f"{name}.csv", out / f"{name}.md", out / f"{name}.png")


def write_text(path: Path, text: str) -> Path:
    """``text`` into ``path`` atomically (a page is complete or absent)."""
    return atomic_write(path, text)


def write_page(path: Path, title: str, header: Sequence[str], sections: Iterable[str]) -> Path:
    """``# title``, the header lines, then the sections separated by blank lines."""
    lines = [f"# {title}", "", *header, ""]
    return write_text(path, "\n".join(lines) + "\n" + "\n\n".join(sections).rstrip() + "\n")


def write_csv(path: Path, rows: Sequence[Mapping], columns: Sequence[str] | None = None) -> Path:
    """Rows as CSV (floats with 6 significant digits)."""
    columns = list(columns or _columns(rows))
    path.parent.mkdir(parents=True, exist_ok=True)
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    return write_text(path, text.getvalue())


def _columns(rows: Sequence[Mapping]) -> list[str]:
    seen: dict[str, None] = {}
    for row in rows:
        seen.update(dict.fromkeys(row))
    return list(seen)


# --------------------------------------------------------------------------- Markdown


def fmt(value, digits: int = 3) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return "—" if np.isnan(value) else f"{value:.{digits}f}"
    return str(value)


def markdown_table(rows: Sequence[Mapping], columns: Sequence[str],
                   headers: Sequence[str] | None = None) -> str:
    headers = list(headers or columns)
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(fmt(row.get(c, "")) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


# --------------------------------------------------------------------------- figures


def figure(n_panels: int, width: float = 5.0, height: float = 3.6):
    """A row of ``n_panels`` matplotlib axes (Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, max(1, n_panels), figsize=(width * max(1, n_panels), height),
                             squeeze=False)
    return fig, list(axes[0])


def save_figure(fig, path: Path) -> Path:
    """The figure as a PNG at 110 dpi (written atomically), then closed."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    atomic_write(path, lambda handle: fig.savefig(handle, format="png", dpi=110))
    plt.close(fig)
    return path


def finish_panels(fig, axes, titles: Sequence[str], ylabel: str, path: Path,
                  legend_size: float = 7) -> Path:
    """Accuracy panels: each titled, y from 0 to 1, a light grid; the y label on the first
    panel and the legend (lower right) on the last; saved with :func:`save_figure`."""
    for ax, title in zip(axes, titles):
        ax.set_title(title)
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(ylabel)
    axes[-1].legend(fontsize=legend_size, loc="lower right")
    return save_figure(fig, path)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
