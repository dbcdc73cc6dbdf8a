"""Extraction benchmark (issue 2): pipeline overhead, capture overhead, memory at scale.

Measured in one process on the same images and model (default ``efficientnet_lite0`` at
128 px, layers ``full``, mean pooling, batch 32, torch's default thread count):

(a) end-to-end :func:`featpipe.extract.extract` throughput (decode + preprocess + capture +
    pooled copy + HDF5 write) divided by the bare forward throughput of the plain model on the
    same images already decoded and preprocessed; once per DataLoader worker count. Capture
    only (``FeatureCapture`` on the same tensors) and decode only (the DataLoader without a
    forward) are timed too, to tell capture overhead from decode/write overhead.
(b) ``FeatureCapture`` time with ``full`` divided by the time with ``last`` (same tensors).
(c) peak RSS of an extraction of 1k and of 10k images (the Fashion-MNIST IDX test file),
    each in a fresh subprocess; ratio 10k / 1k.

Every repeat times all variants back to back; ratios are taken within a repeat and the median
over repeats is reported. Command line (from the repository root)::

    python -m benchmarks.bench_extract [--quick] [--out benchmarks/results]

``--quick`` uses a handful of images (well under a minute) and, like every script, writes into
``benchmarks/out/quick`` unless ``--out`` is given. Writes ``extract.csv``, ``extract.md`` and
``extract.png`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch.utils.data import DataLoader

from benchmarks import harness
from benchmarks.harness import figure, fmt, log, markdown_table, save_figure
from featpipe.models import create_backbone
from featpipe.models.capture import FeatureCapture
from featpipe.extract.run import extract
from featpipe.data.imageset import ImageSet
from featpipe.data.loading import DecodedImages, collate_decoded
from featpipe.data.sources import open_source

MODULE = "benchmarks.bench_extract"
FASHION_IDX = Path("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")
FASHION_PNG = Path("benchmarks/data/fashion-mnist/manifest.csv")
CLIPART = Path("data/clipart-mini")
TUXPAINT = Path("benchmarks/data/tuxpaint/manifest.csv")
TARGETS = {"a": 0.90, "b": 1.10, "c": 1.20}


@dataclass(frozen=True)
class Settings:
    """What one benchmark run measures."""

    sources: dict[str, Path]       # throughput sources (name -> image source)
    n_images: int                  # at most this many images per throughput source
    batch_size: int
    repeats: int
    worker_counts: tuple[int | None, ...]  # None: extract's own choice
    memory_sizes: tuple[int, int]  # (small, large) image counts of the memory runs
    memory_image_size: int         # input size of the memory runs (only time depends on it)
    model: str = "efficientnet_lite0"
    image_size: int = 128
    layers: str = "full"


FULL = Settings(sources={"fashion-mnist-png": FASHION_PNG, "clipart-mini": CLIPART,
                         "tuxpaint": TUXPAINT},
                n_images=256, batch_size=32, repeats=3, worker_counts=(0, 1, None),
                memory_sizes=(1000, 10000), memory_image_size=64)
QUICK = Settings(sources={"clipart-mini": CLIPART}, n_images=12, batch_size=4, repeats=1,
                 worker_counts=(0, 1), memory_sizes=(8, 24), memory_image_size=32,
                 image_size=64)


# --------------------------------------------------------------------------- entry point


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; write ``extract.csv``/``.md``/``.png`` into ``--out``. Returns 0."""
    args = _parse(argv)
    settings = QUICK if args.quick else FULL
    load_before = harness.format_load()
    throughput = [row for name, source in settings.sources.items()
                  for row in measure_throughput(name, source, settings)]
    memory = measure_memory(settings)
    load_after = harness.format_load()
    csv_path, md_path, png_path = harness.outputs(args, "extract")
    harness.write_csv(csv_path, throughput + memory)
    plot(throughput, png_path)
    page = render(throughput, memory, settings, args, (load_before, load_after))
    harness.write_text(md_path, page)
    log(page)
    return 0


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = harness.base_parser(__doc__.splitlines()[0],
                            quick_help="a handful of images, one repeat")
    return harness.parse_args(p, argv)


# --------------------------------------------------------------------------- (a) and (b)


def measure_throughput(name: str, source: Path, settings: Settings) -> list[dict]:
    """Time every variant on ``source``, ``settings.repeats`` times, interleaved.

    In each repeat the bare forward and both captures alternate batch by batch (so a change
    of machine load hits them alike), then decode only and each ``extract`` run follow. One
    row per variant: median seconds and images/s, and the median over repeats of the ratio to
    the bare forward (and to ``capture last``) of the same repeat.
    """
    image_set = open_source(source, allow_outside=True)
    image_set = image_set.subset(range(min(settings.n_images, len(image_set))))
    backbone = create_backbone(settings.model, image_size=settings.image_size)
    batches = decoded_batches(image_set, backbone, settings.batch_size, workers=0)
    forwards = {"bare forward": bare_forward(backbone.model),
                "capture full": FeatureCapture(backbone, settings.layers),
                "capture last": FeatureCapture(backbone, "last")}
    pipelines = {"decode only, workers=0": lambda: time_decode(image_set, backbone, settings)}
    for workers in settings.worker_counts:
        pipelines[f"extract, workers={'auto' if workers is None else workers}"] = (
            lambda w=workers: time_extract(image_set, settings, w))
    seconds: dict[str, list[float]] = {v: [] for v in [*forwards, *pipelines]}
    for repeat in range(settings.repeats):
        log(f"[{name}] repeat {repeat + 1}/{settings.repeats}, load {harness.format_load()}")
        for variant, spent in time_alternating(forwards, batches).items():
            seconds[variant].append(spent)
        for variant, run in pipelines.items():
            seconds[variant].append(run())
    return [_throughput_row(name, variant, seconds, len(image_set), settings)
            for variant in seconds]


def _throughput_row(source: str, variant: str, seconds: dict[str, list[float]], n: int,
                    settings: Settings) -> dict:
    mine, bare, last = seconds[variant], seconds["bare forward"], seconds["capture last"]
    return {"part": "throughput", "source": source, "variant": variant, "n_images": n,
            "batch_size": settings.batch_size, "threads": torch.get_num_threads(),
            "seconds": statistics.median(mine),
            "images_per_second": n / statistics.median(mine),
            "ratio_to_bare": statistics.median(b / s for b, s in zip(bare, mine)),
            "time_ratio_to_last": statistics.median(s / t for s, t in zip(mine, last))}


def decoded_batches(image_set: ImageSet, backbone, batch_size: int,
                    workers: int) -> list[torch.Tensor]:
    """The preprocessed image batches exactly as ``extract`` builds them."""
    return [images for _, images, _ in _loader(image_set, backbone, batch_size, workers)
            if images is not None]


def _loader(image_set: ImageSet, backbone, batch_size: int, workers: int) -> DataLoader:
    preprocessing = backbone.preprocessing
    dataset = DecodedImages(image_set, transform=preprocessing,  # normalised float tensors
                            size_hint=preprocessing.resize_size)
    return DataLoader(dataset, batch_size=batch_size, num_workers=workers,
                      collate_fn=collate_decoded)


def bare_forward(model: torch.nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """The plain model under ``torch.inference_mode()``."""
    def forward(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return model(x)

    return forward


def time_alternating(steps: dict[str, Callable[[torch.Tensor], object]],
                     batches: list[torch.Tensor]) -> dict[str, float]:
    """Seconds each step spends over ``batches``, the steps taking turns on every batch
    (the order rotates per batch); one untimed warm-up batch per step first."""
    for step in steps.values():
        step(batches[0])
    spent = dict.fromkeys(steps, 0.0)
    names = list(steps)
    for i, x in enumerate(batches):
        for name in names[i % len(names):] + names[:i % len(names)]:
            started = time.perf_counter()
            steps[name](x)
            spent[name] += time.perf_counter() - started
    return spent


def time_decode(image_set: ImageSet, backbone, settings: Settings) -> float:
    """Seconds to decode, preprocess and collate every image in the main process."""
    started = time.perf_counter()
    decoded_batches(image_set, backbone, settings.batch_size, workers=0)
    return time.perf_counter() - started


def time_extract(image_set: ImageSet, settings: Settings, workers: int | None) -> float:
    """Seconds of ``extract``'s pipeline (model creation and store set-up excluded)."""
    with tempfile.TemporaryDirectory() as tmp:
        result = extract(image_set, Path(tmp) / "features.h5", model=settings.model,
                         layers=settings.layers, image_size=settings.image_size,
                         batch_size=settings.batch_size, workers=workers, progress=False)
    if result.n_computed != len(image_set):
        raise RuntimeError(f"extract computed {result.n_computed} of {len(image_set)} images")
    return result.seconds


# --------------------------------------------------------------------------- (c)


def measure_memory(settings: Settings) -> list[dict]:
    """Peak RSS of extractions of the small and the large image count, each in a subprocess."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in settings.memory_sizes:
            log(f"[memory] extracting {n} images in a subprocess, load {harness.format_load()}")
            report = _run_child(n, Path(tmp) / f"features-{n}.h5", settings)
            rows.append({"part": "memory", "source": FASHION_IDX.name, "variant": f"{n} images",
                         "n_images": n, "batch_size": settings.batch_size,
                         "seconds": report["seconds"],
                         "images_per_second": n / report["seconds"], **report})
    small = rows[0]["peak_rss_mb"]
    for row in rows:
        row["peak_ratio_to_small"] = row["peak_rss_mb"] / small
    return rows


def _run_child(n: int, out: Path, settings: Settings) -> dict:
    code = (f"import json; from {MODULE} import memory_child; "
            f"print(json.dumps(memory_child({n}, {str(out)!r}, {settings.batch_size}, "
            f"{settings.model!r}, {settings.memory_image_size}, {settings.layers!r})))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=False)
    if done.returncode != 0:
        raise RuntimeError(f"memory run of {n} images failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def memory_child(n: int, out: str, batch_size: int, model: str, image_size: int,
                 layers: str) -> dict:
    """Extract the first ``n`` IDX test images; report this process's peak RSS (MiB)."""
    image_set = open_source(FASHION_IDX).subset(range(n))
    rss_before = harness.current_rss_mib()
    result = extract(image_set, out, model=model, layers=layers, image_size=image_size,
                     batch_size=batch_size, progress=False)
    return {"rss_before_extract_mb": rss_before,
            "peak_rss_mb": harness.own_peak_rss_mib(),
            "workers_peak_rss_mb": harness.own_peak_rss_mib(children=True),
            "seconds": result.seconds, "store_mb": os.path.getsize(out) / harness.MIB}


# --------------------------------------------------------------------------- output


def render(throughput: list[dict], memory: list[dict], settings: Settings, args,
           loads: tuple[str, str]) -> str:
    """The Markdown result page."""
    lines = [
        "# Extraction benchmark (issue 2)", "",
        *harness.provenance(MODULE, args.argv, f"; torch threads {torch.get_num_threads()}"),
        f"- Load average (1/5/15 min) at start: {loads[0]}; at end: {loads[1]}",
        f"- {settings.model} at {settings.image_size} px, layers `{settings.layers}`, mean "
        f"pooling, batch {settings.batch_size}, float32 store; {settings.repeats} interleaved "
        "repeat(s), medians" + ("; **--quick**" if args.quick else ""), "",
        "## Targets", "", markdown_table(verdicts(throughput, memory),
                                         ["target", "measured", "goal", "met"]), "",
        "## Throughput (same images, same process)", "",
        markdown_table(throughput, ["source", "variant", "n_images", "seconds",
                                    "images_per_second", "ratio_to_bare", "time_ratio_to_last"],
                       ["source", "variant", "images", "s", "img/s", "÷ bare img/s",
                        "time ÷ capture last"]), "",
        "## Where the extra time of extract goes (medians, seconds for all images)", "",
        markdown_table(breakdown(throughput), ["source", "bare", "capture_extra",
                                               "decode_workers0", "extract_w0_extra",
                                               "extract_w1_extra", "extract_auto_extra"],
                       ["source", "bare forward", "capture full − bare",
                        "decode+preprocess alone", "extract w=0 − bare",
                        "extract w=1 − bare", "extract (default workers) − bare"]), "",
        f"## Peak memory (one subprocess per size, Fashion-MNIST IDX test images, "
        f"{settings.memory_image_size} px, default workers)", "",
        markdown_table(memory, ["variant", "rss_before_extract_mb", "peak_rss_mb",
                                "workers_peak_rss_mb", "peak_ratio_to_small", "store_mb",
                                "images_per_second"],
                       ["run", "RSS before extract (MiB)", "peak RSS (MiB)",
                        "worker peak RSS (MiB)", "peak ÷ small run", "store (MiB)", "img/s"]),
        "",
    ]
    return "\n".join(lines)


def breakdown(throughput: list[dict]) -> list[dict]:
    """Per source: the bare forward time and what each richer variant adds to it."""
    rows = []
    for source in dict.fromkeys(row["source"] for row in throughput):
        spent = {r["variant"]: r["seconds"] for r in throughput if r["source"] == source}
        bare = spent["bare forward"]
        rows.append({"source": source, "bare": bare,
                     "capture_extra": spent["capture full"] - bare,
                     "decode_workers0": spent["decode only, workers=0"],
                     "extract_w0_extra": spent.get("extract, workers=0", float("nan")) - bare,
                     "extract_w1_extra": spent.get("extract, workers=1", float("nan")) - bare,
                     "extract_auto_extra": spent.get("extract, workers=auto",
                                                     float("nan")) - bare})
    return rows


def verdicts(throughput: list[dict], memory: list[dict]) -> list[dict]:
    """One row per target: the measured value, the goal and whether it was met."""
    rows = []
    for source in dict.fromkeys(row["source"] for row in throughput):
        mine = [r for r in throughput if r["source"] == source]
        extracts = [r for r in mine if r["variant"].startswith("extract")]
        default = [r for r in extracts if r["variant"] == "extract, workers=auto"]
        best = default[0] if default else max(extracts, key=lambda r: r["ratio_to_bare"])
        full = next(r for r in mine if r["variant"] == "capture full")
        rows.append(_verdict(f"(a) {source}: extract ({best['variant'].split(', ')[1]}) "
                             "÷ bare forward img/s", best["ratio_to_bare"], ">=", TARGETS["a"]))
        rows.append(_verdict(f"(b) {source}: capture full ÷ capture last time",
                             full["time_ratio_to_last"], "<=", TARGETS["b"]))
    rows.append(_verdict(f"(c) peak RSS {memory[-1]['n_images']} ÷ {memory[0]['n_images']} "
                         "images", memory[-1]["peak_ratio_to_small"], "<=", TARGETS["c"]))
    return rows


def _verdict(target: str, value: float, sense: str, goal: float) -> dict:
    met = value >= goal if sense == ">=" else value <= goal
    return {"target": target, "measured": fmt(value), "goal": f"{sense} {goal:.2f}",
            "met": "yes" if met else "**no**"}


def plot(throughput: list[dict], path: Path) -> Path:
    """Images per second of every variant, one panel per source."""
    sources = list(dict.fromkeys(row["source"] for row in throughput))
    fig, axes = figure(len(sources), width=6.0)
    for ax, source in zip(axes, sources):
        rows = [r for r in throughput if r["source"] == source]
        ax.barh([r["variant"] for r in rows], [r["images_per_second"] for r in rows])
        ax.invert_yaxis()
        ax.set_xlabel("images / second")
        ax.set_title(f"{source} ({rows[0]['n_images']} images)")
    return save_figure(fig, path)


if __name__ == "__main__":
    raise SystemExit(main())
