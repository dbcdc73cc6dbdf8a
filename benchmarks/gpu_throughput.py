"""GPU throughput benchmark (issue 15): one command gives every figure of the issue.

For ResNet-50, EfficientNet-Lite0 and ViT-B/16 (random weights: speed does not depend on them)
at 224 px, in one process:

(a) bare forward img/s of the plain model on ready (decoded, normalised) tensors on the device,
    eager fp32 / eager bf16 / channels_last bf16 / ``torch.compile`` bf16;
(b) end-to-end :func:`featpipe.extract.extract` img/s from JPEG files on disk (decode, resize,
    capture, pooled copy, HDF5 write): ``--layers last`` and ``full``, eager / channels_last /
    compile, fp32 / bf16, CPU decode (DataLoader workers) / GPU decode (batched nvJPEG);
    each divided by the bare forward of the same model, dtype and memory format;
(c) the 45-value logistic sweep (featpipe's L-BFGS logistic regression, warm-started along
    the Kornblith C grid) and the ridge probe (5-fold, 45 alphas) on 50k x 2,048 synthetic
    features, on the GPU (torch tensors) and on the CPU (NumPy). The CPU sweep stops after
    ``--cpu-sweep-budget`` seconds; the ratio compares the C values both ran.

Targets (issue 15): (b) >= 0.8 x (a); ResNet-50 bf16 end to end >= 10,000 img/s on an
H100/H200-class GPU; GPU sweep >= 10x the CPU one. The page records the GPU, driver, torch
version, date and load average. Steps run in order of importance (:func:`plan`) and stop at
``--budget`` seconds; a skipped or failing step is listed with why, the others still run. The JPEGs (500x375, like ImageNet's median) are
generated first into a temporary folder, so they are read from the page cache.

Command line (from the repository root)::

    python -m benchmarks.gpu_throughput                       # on a GPU machine, < ~10 min
    python -m benchmarks.gpu_throughput --quick --device cpu  # smoke run: tiny models and sizes

Writes ``gpu_throughput.csv``, ``gpu_throughput.md`` and ``gpu_throughput.json`` into ``--out``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks import harness

MODULE = "benchmarks.gpu_throughput"
TARGETS = {"end_to_end_ratio": 0.8, "resnet50_bf16_img_s": 10_000, "sweep_speedup": 10.0}


@dataclass(frozen=True)
class Settings:
    models: dict[str, str]  # label -> featpipe backbone name
    image_size: int
    n_images: int
    jpeg_size: tuple[int, int]
    batch_size: int
    forward_seconds: float
    features: tuple[int, int, int]  # rows, columns, classes of the classical part
    compile_backend: str


FULL = Settings(models={"resnet50": "torchvision:resnet50", "lite0": "efficientnet_lite0",
                        "vit_b16": "timm:vit_base_patch16_224"},
                image_size=224, n_images=16384, jpeg_size=(500, 375), batch_size=256,
                forward_seconds=3.0, features=(50_000, 2048, 10), compile_backend="inductor")
QUICK = Settings(models={"resnet18": "torchvision:resnet18", "lite0": "efficientnet_lite0",
                         "vit_tiny": "timm:vit_tiny_patch16_224"},
                 image_size=32, n_images=16, jpeg_size=(64, 48), batch_size=8,
                 forward_seconds=0.1, features=(600, 64, 4), compile_backend="aot_eager")

#: (a) bare forward variants: name -> (amp, channels_last, compile).
FORWARDS = {"eager-fp32": (None, False, False), "eager-bf16": ("bf16", False, False),
            "cl-bf16": ("bf16", True, False), "compile-bf16": ("bf16", True, True)}


@dataclass(frozen=True)
class EndToEnd:
    """(b) one extraction arm."""

    forward: str  # a key of FORWARDS
    decode: str
    layers: str


def plan(models) -> list[tuple]:
    """The steps, most important first (the time budget cuts the tail): ``("bare", model,
    forward)``, ``("extract", model, EndToEnd)`` or ``("classical",)``. ``auto`` decodes on the
    GPU when there is one (on a CPU the ``gpu`` arms are listed as needing CUDA); a compiled
    extraction follows its compiled bare forward."""
    steps = [("bare", m, v) for m in models for v in ("eager-fp32", "eager-bf16", "cl-bf16")]
    steps += [("extract", m, EndToEnd("cl-bf16", decode, layers)) for m in models
              for decode, layers in (("gpu", "last"), ("cpu", "last"), ("auto", "full"))]
    steps.append(("classical",))
    steps += [("extract", m, EndToEnd("eager-fp32", "auto", "last")) for m in models]
    for m in models:
        steps += [("bare", m, "compile-bf16"), ("extract", m, EndToEnd("compile-bf16", "auto",
                                                                       "last"))]
    return steps


def _parse(argv):
    p = harness.base_parser("GPU extraction and classical-stage throughput (issue 15)",
                            "tiny models, sizes and images (a smoke run; use with --device cpu)")
    p.add_argument("--device", default="cuda", help="cuda | cuda:N | cpu (default: cuda)")
    p.add_argument("--budget", type=float, default=540.0,
                   help="seconds after which the remaining arms are skipped (default 540)")
    p.add_argument("--cpu-sweep-budget", type=float, default=60.0,
                   help="seconds the CPU logistic sweep may take (default 60)")
    p.add_argument("--workers", type=int, default=None,
                   help="decode processes (default: cores - 2, at most 12)")
    return harness.parse_args(p, argv)


def environment(device) -> dict:
    """GPU, driver, versions, machine, date and load: the page's provenance."""
    import torch
    import torchvision

    gpu, driver = "none", "none"
    if device.type == "cuda":
        gpu = torch.cuda.get_device_name(device)
        try:
            driver = subprocess.run(["nvidia-smi", "--query-gpu=driver_version",
                                     "--format=csv,noheader"], capture_output=True, text=True,
                                    check=True).stdout.split()[0]
        except (OSError, subprocess.CalledProcessError, IndexError):
            driver = "unknown"
    return {"gpu": gpu, "driver": driver, "cuda": torch.version.cuda or "none",
            "torch": torch.__version__, "torchvision": torchvision.__version__,
            "cpu": harness.machine(), "date": _dt.datetime.now().isoformat(timespec="seconds"),
            "commit": harness.git_commit(), "load_before": harness.format_load()}


def _write_jpeg(args) -> None:
    from PIL import Image, ImageDraw

    path, seed, (width, height) = args
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 1, width)[None, :, None] * rng.integers(60, 200, 3)
    pixels = (ramp + rng.normal(0, 12, (height, width, 3)) + 40).clip(0, 255).astype(np.uint8)
    image = Image.fromarray(pixels)
    box = sorted(rng.integers(0, min(width, height), 4).tolist())
    ImageDraw.Draw(image).ellipse(box, fill=tuple(rng.integers(0, 255, 3).tolist()))
    image.save(path, quality=90)


def make_jpegs(folder: Path, n: int, size: tuple[int, int]) -> Path:
    """``n`` natural-looking JPEGs in two class folders (a colour ramp, noise, an ellipse)."""
    jobs = []
    for i in range(n):
        (folder / f"c{i % 2}").mkdir(parents=True, exist_ok=True)
        jobs.append((folder / f"c{i % 2}" / f"{i:06d}.jpg", i, size))
    with ProcessPoolExecutor(max_workers=max(1, (os.cpu_count() or 2) - 1)) as pool:
        list(pool.map(_write_jpeg, jobs, chunksize=64))
    return folder


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bare_forward(name: str, variant: str, settings: Settings, device) -> float:
    """Images per second of ``model(x)`` on ready tensors (the plain network, no capture)."""
    import torch

    import featpipe.models.capture as capture_module
    from featpipe.models import create_backbone

    amp, channels_last, compiled = FORWARDS[variant]
    model = create_backbone(name, pretrained=False, image_size=settings.image_size).model
    model = model.eval().to(device)
    x = torch.randn(settings.batch_size, 3, settings.image_size, settings.image_size,
                    device=device)
    if channels_last:
        model, x = model.to(memory_format=torch.channels_last), x.contiguous(
            memory_format=torch.channels_last)
    if compiled:
        model = torch.compile(model, dynamic=False, backend=capture_module.COMPILE_BACKEND)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp == "bf16")
    with torch.inference_mode(), autocast:
        for _ in range(3):  # warm-up (and compilation)
            model(x)
        _sync(device)
        done, started = 0, time.perf_counter()
        while time.perf_counter() - started < settings.forward_seconds:
            model(x)
            done += len(x)
            _sync(device)
        return done / (time.perf_counter() - started)


def end_to_end(name: str, arm: EndToEnd, folder: Path, settings: Settings, device,
               workers: int) -> float:
    """Images per second of one :func:`featpipe.extract.extract` call from the JPEG files."""
    from featpipe.extract import extract

    amp, channels_last, compiled = FORWARDS[arm.forward]
    with tempfile.TemporaryDirectory() as out:
        result = extract(folder, Path(out) / "f.h5", model=name, pretrained=False,
                         image_size=settings.image_size, layers=arm.layers, amp=amp,
                         channels_last=channels_last, compile=compiled, decode=arm.decode,
                         batch_size=settings.batch_size, workers=workers, device=str(device),
                         progress=False)
    return result.images_per_second


def classical(settings: Settings, device, cpu_budget: float) -> list[dict]:
    """(c) the logistic sweep and the ridge probe, on the device and on the CPU."""
    import torch

    from featpipe.classical.classifiers import KORNBLITH_C_GRID
    from featpipe.classical.linear import LBFGSLogisticRegression
    from featpipe.classical.ridge import RidgeProbeClassifier

    n, p, k = settings.features
    rng = np.random.default_rng(0)
    y = rng.integers(0, k, n)
    X = (rng.normal(size=(n, p)) + rng.normal(scale=0.15, size=(k, p))[y]).astype(np.float32)
    on_device = torch.as_tensor(X, device=device)
    rows = []
    for where, data, budget in (("torch", on_device, None), ("numpy", X, cpu_budget)):
        times = _sweep(LBFGSLogisticRegression(tol=1e-4, warm_start=True), data, y,
                       KORNBLITH_C_GRID, device if where == "torch" else None, budget)
        where = f"torch {device}" if where == "torch" else "numpy (CPU)"
        rows.append({"part": "logistic-sweep", "where": where, "values": len(times),
                     "seconds": sum(times), "times": times})
        started = time.perf_counter()
        RidgeProbeClassifier(cv=5).fit(data, y)
        _sync(data.device if isinstance(data, torch.Tensor) else torch.device("cpu"))
        rows.append({"part": "ridge-probe", "where": where, "values": 45,
                     "seconds": time.perf_counter() - started})
    return rows


def _sweep(clf, X, y, grid, device, budget) -> list[float]:
    times = []
    for C in grid:
        started = time.perf_counter()
        clf.set_params(C=C).fit(X, y)
        if device is not None:
            _sync(device)
        times.append(time.perf_counter() - started)
        if budget is not None and sum(times) > budget:
            break
    return times


def main(argv=None) -> int:
    args = _parse(argv)
    import torch

    import featpipe.models.capture as capture_module
    from featpipe.models.device import resolve_device

    settings = QUICK if args.quick else FULL
    device = resolve_device(args.device)
    capture_module.COMPILE_BACKEND = settings.compile_backend
    workers = args.workers
    if workers is None:
        workers = 0 if args.quick else min(12, max(0, (os.cpu_count() or 2) - 2))
    started, rows, classical_rows = time.perf_counter(), [], []
    with tempfile.TemporaryDirectory(prefix="featpipe-jpegs-") as tmp:
        # the JPEG writers fork before CUDA is initialised (environment() initialises it)
        folder = make_jpegs(Path(tmp), settings.n_images, settings.jpeg_size)
        env = environment(device)
        harness.log(f"{env['gpu']} driver {env['driver']} torch {env['torch']}; "
                    f"load {env['load_before']}; JPEGs ready after "
                    f"{time.perf_counter() - started:.0f} s")
        for step in plan(settings.models):
            late = time.perf_counter() - started > args.budget
            if step[0] == "classical":
                classical_rows = [] if late else classical(settings, device,
                                                           args.cpu_sweep_budget)
                continue
            _, label, what = step
            name = settings.models[label]
            if step[0] == "bare":
                value, note = _attempt(late, bare_forward, name, what, settings, device)
                rows.append({"part": "bare", "model": label, "forward": what, "img_s": value,
                             "load": harness.format_load(), "note": note})
            else:
                if what.decode == "gpu" and device.type != "cuda":
                    value, note = None, "needs CUDA"
                else:
                    value, note = _attempt(late, end_to_end, name, what, folder, settings,
                                           device, workers)
                reference = next((r["img_s"] for r in rows if r["part"] == "bare" and
                                  r["model"] == label and r["forward"] == what.forward), None)
                rows.append({"part": "extract", "model": label, "forward": what.forward,
                             "decode": resolve_decode(what.decode, device), "layers": what.layers,
                             "img_s": value, "ratio_to_bare": value / reference
                             if value and reference else None,
                             "load": harness.format_load(), "note": note})
            harness.log(f"{step[0]} {label} {what}: {harness.fmt(value, 0)} img/s {note}")
            if device.type == "cuda":
                torch.cuda.empty_cache()
    write_pages(args, env, rows, classical_rows, time.perf_counter() - started, settings,
                workers)
    return 0


def _attempt(late: bool, measure, *args) -> tuple[float | None, str]:
    """``(measure(*args), "")``, or ``(None, why)``: past the budget, or its error in one line
    (one failing arm must not cost the rest of a scarce GPU run)."""
    if late:
        return None, "skipped: time budget"
    try:
        return measure(*args), ""
    except Exception as exc:  # noqa: BLE001 - recorded on the page
        return None, f"error: {type(exc).__name__}: {str(exc).splitlines()[0][:160]}" \
            if str(exc) else f"error: {type(exc).__name__}"


def resolve_decode(decode: str, device) -> str:
    """Where ``decode`` decodes on ``device`` (``auto``: the GPU when there is one)."""
    return ("gpu" if device.type == "cuda" else "cpu") if decode == "auto" else decode


def sweep_speedup(classical_rows: list[dict]) -> float | None:
    """CPU seconds / GPU seconds over the C values both sweeps ran."""
    times = [r["times"] for r in classical_rows if r["part"] == "logistic-sweep"]
    if len(times) != 2:
        return None
    on_device, on_numpy = times
    m = min(len(on_device), len(on_numpy))
    return sum(on_numpy[:m]) / sum(on_device[:m]) if m else None


def verdicts(rows: list[dict], classical_rows: list[dict], quick: bool) -> list[str]:
    """The issue's targets, met or missed, in words."""
    ratios = [r["ratio_to_bare"] for r in rows if r.get("ratio_to_bare") is not None]
    resnet = [r["img_s"] for r in rows if r["part"] == "extract" and r["model"] == "resnet50"
              and r["forward"] != "eager-fp32" and r["img_s"] is not None]
    speedup = sweep_speedup(classical_rows)
    lines = [f"- end to end / bare forward: best {harness.fmt(max(ratios, default=None), 2)}, "
             f"worst {harness.fmt(min(ratios, default=None), 2)} (target >= "
             f"{TARGETS['end_to_end_ratio']})",
             f"- ResNet-50 bf16 end to end: best {harness.fmt(max(resnet, default=None), 0)} "
             f"img/s (target >= {TARGETS['resnet50_bf16_img_s']:,} on an H100/H200)",
             f"- logistic sweep GPU speed-up: {harness.fmt(speedup, 1)}x (target >= "
             f"{TARGETS['sweep_speedup']:.0f}x)"]
    if quick:
        lines.append("- quick run: tiny models and sizes, the figures say nothing about speed")
    return lines


def write_pages(args, env: dict, rows: list[dict], classical_rows: list[dict],
                seconds: float, settings: Settings, workers: int) -> None:
    files = harness.outputs(args, "gpu_throughput")
    harness.write_csv(files.csv, [*rows, *({k: v for k, v in r.items() if k != "times"}
                                           for r in classical_rows)])
    harness.write_json(files.csv.with_suffix(".json"), {"environment": env, "rows": rows,
                                                        "classical": classical_rows}, indent=1)
    header = [f"- Command: `{harness.command_line(MODULE, args.argv)}`",
              f"- GPU: {env['gpu']}, driver {env['driver']}, CUDA {env['cuda']}; CPU: "
              f"{env['cpu']}",
              f"- torch {env['torch']}, torchvision {env['torchvision']}; date {env['date']}; "
              f"featpipe commit `{env['commit']}`; load before {env['load_before']}; "
              f"{seconds:.0f} s in all",
              f"- Batch {settings.batch_size}, {settings.n_images} JPEGs of "
              f"{settings.jpeg_size[0]}x{settings.jpeg_size[1]} (page cache), {workers} decode "
              f"workers, random weights, {settings.image_size} px"]
    sections = ["## Targets\n\n" + "\n".join(verdicts(rows, classical_rows, args.quick)),
                "## Bare forward on ready tensors\n\n" + harness.markdown_table(
                    [r for r in rows if r["part"] == "bare"],
                    ["model", "forward", "img_s", "load", "note"]),
                "## End to end from JPEG files\n\n" + harness.markdown_table(
                    [r for r in rows if r["part"] == "extract"],
                    ["model", "forward", "decode", "layers", "img_s", "ratio_to_bare", "load",
                     "note"]),
                "## Classical stage (features %d x %d, %d classes)\n\n" % settings.features
                + harness.markdown_table(
                    classical_rows, ["part", "where", "values", "seconds"])]
    harness.write_page(files.md, "GPU throughput (issue 15)", header, sections)
    harness.log(f"wrote {files.md}")


if __name__ == "__main__":
    sys.exit(main())
