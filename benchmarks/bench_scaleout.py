"""Scale-out: a 2-worker Dask LocalCluster against one process, and out-of-core vs in-memory fit.

Three measurements, each run back to back in one invocation:

1. extraction: ``extract`` in this process (torch with its default threads, decoding in the
   process) vs ``extract_on_dask`` on a LocalCluster of 2 single-threaded workers (4 shards,
   merged with virtual datasets) on the first N Fashion-MNIST images; the cluster's start-up and
   a first use of the workers (torch imported, a 32-image run) are timed apart, so the timed
   run is the warm cluster's;
2. search: the ``fne`` fast search (3 folds) on the Fashion-MNIST store's ``bn2`` layer, local
   (``n_jobs=1``) vs through joblib's Dask backend on the same cluster;
3. memory: stores of 1x, 4x and 16x a base size, **synthesized** from the real Fashion-MNIST
   ``bn2`` features (rows resampled with Gaussian noise of 0.05 of each feature's spread,
   labels and train/test split kept), fitted in a fresh process each: the out-of-core recipe
   (``--memory-budget``) vs the in-memory ``ridge`` recipe (closed-form, the cheapest in-memory
   search); peak RSS is the child's own ``VmHWM``. Test accuracy of both is recorded.

The machine has 2 cores shared with other sessions: the load average is recorded before each
arm, and a 2-worker speed-up cannot exceed what the load leaves free.

    python -m benchmarks.bench_scaleout [--quick] [--parts extraction,search,memory]

A subset of ``--parts`` writes its own page (``scaleout-<parts>.md``).
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from benchmarks import harness

NAME = "scaleout"
MODULE = "benchmarks.bench_scaleout"
MANIFEST = harness.DATA_DIR / "fashion-mnist" / "manifest.csv"
STORE = harness.FEATURES_DIR / "fashion-mnist-efficientnet_lite0-128-pad.h5"
LAYER = "bn2"
PARTS = ("extraction", "search", "memory")
BUDGET = 384 * 2**20
COLUMNS = ["part", "arm", "size", "n_rows", "store_mib", "seconds", "speedup", "peak_mib",
           "budget_mib", "test_accuracy", "detail", "load_before"]

_CHILD = """
import json, sys, time
from featpipe.workflows.fit import TrainingSpec, fit_store
streaming = sys.argv[3] == "streaming"
spec = TrainingSpec(recipe="ridge", streaming=streaming, memory_budget=int(sys.argv[4]),
                    max_iter=5 if streaming else None, cache_dir=sys.argv[5])
started = time.perf_counter()
outcome = fit_store(sys.argv[1], spec, out=sys.argv[2], test_split="test")
peak = [int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmHWM:")]
print(json.dumps({"seconds": time.perf_counter() - started, "peak": peak[0],
                  "accuracy": outcome.evaluation["accuracy"], "streamed": bool(outcome.streamed),
                  "search": outcome.search.extra.get("search") if streaming else None}))
"""


def main(argv=None) -> int:
    p = harness.base_parser(__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=240, help="images extracted (part 1)")
    p.add_argument("--base-rows", type=int, default=6000, help="rows of the 1x store (part 3)")
    p.add_argument("--parts", default=",".join(PARTS), help="default: %(default)s")
    args = harness.parse_args(p, argv)
    if args.quick:
        args.images, args.base_rows = 24, 600
    parts = harness.choose(args.parts, PARTS, PARTS)
    rows = []
    if {"extraction", "search"} & set(parts):
        rows += on_cluster(args, parts)
    if "memory" in parts:
        with tempfile.TemporaryDirectory() as folder:
            rows += memory(Path(folder), args)
    write(args, rows, "" if list(parts) == list(PARTS) else "-" + "-".join(parts))
    return 0


def on_cluster(args, parts) -> list[dict]:
    from featpipe.scale.cluster import connect

    with contextlib.ExitStack() as stack:
        started = harness.measure(stack.enter_context, connect("local:2"))
        client, folder = started.value, Path(stack.enter_context(tempfile.TemporaryDirectory()))
        rows = [_row("cluster", "start local:2", started, 0)]
        if "extraction" in parts:
            rows += extraction(folder, client, args)
        if "search" in parts:
            rows += search(client, args)
    return rows


def extraction(folder: Path, client, args) -> list[dict]:
    from featpipe.extract import extract
    from featpipe.scale.extract import extract_on_dask

    source = f"{MANIFEST}[0:{args.images}]"
    settings = dict(layers="full", image_size=128, batch_size=16, progress=False)
    first = harness.measure(extract_on_dask, f"{MANIFEST}[0:32]", folder / "first.h5",
                            dask=client.scheduler.address, n_shards=2, **settings)
    one = harness.measure(extract, source, folder / "one.h5", workers=0, **settings)
    two = harness.measure(extract_on_dask, source, folder / "two.h5", dask=client.scheduler.address,
                          n_shards=4, **settings)
    gap = float(np.abs(_load(folder / "one.h5") - _load(folder / "two.h5")).max())
    return [_row("extraction", "dask first use (32 images)", first, 32),
            _row("extraction", "1 process", one, args.images),
            _row("extraction", "dask local:2, 4 shards", two, args.images,
                 speedup=one.seconds / two.seconds,
                 detail=f"max abs difference to 1 process {gap:.1e} (torch threads 2 vs 1)")]


def _load(path):
    from featpipe.store.reader import FeatureStore

    return FeatureStore.open(path).load().X


def search(client, args) -> list[dict]:
    import dataclasses

    from featpipe.scale.search import on_dask
    from featpipe.store.reader import FeatureStore
    from featpipe.workflows.fit import TrainingSpec, fit_features

    train = FeatureStore.open(STORE).load([LAYER], split="train")
    if args.quick:
        train = train.subset(np.arange(0, len(train.y), 10))
    spec = TrainingSpec(recipe="fne", cv=3, cache_dir=tempfile.mkdtemp())
    local = harness.measure(fit_features, train, spec)
    with on_dask(client.scheduler.address, train.X, train.y):
        remote = harness.measure(fit_features, train, dataclasses.replace(spec, n_jobs=-1))
    same = (local.value.best_params == remote.value.best_params
            and local.value.best_score == remote.value.best_score)
    detail = f"best {local.value.best_params} CV {local.value.best_score:.4f}; same: {same}"
    return [_row("search", "local n_jobs=1", local, len(train.y), detail=detail),
            _row("search", "dask local:2", remote, len(train.y),
                 speedup=local.seconds / remote.seconds, detail=detail)]


def _row(part, arm, measured, n_rows, speedup=None, detail="") -> dict:
    return {"part": part, "arm": arm, "n_rows": n_rows, "seconds": measured.seconds,
            "speedup": speedup, "detail": detail, "load_before": harness.format_load(
                measured.load)}


def memory(folder: Path, args) -> list[dict]:
    rows = []
    for size in (1, 4, 16):
        path = synthesize(folder / f"x{size}.h5", args.base_rows * size, seed=size)
        mib = path.stat().st_size / harness.MIB
        for arm in ("streaming", "in-memory"):
            load = harness.format_load()
            done = subprocess.run([sys.executable, "-c", _CHILD, str(path),
                                   str(folder / "m.skops"), arm, str(BUDGET),
                                   str(folder / "cache")], capture_output=True, text=True)
            if done.returncode:
                raise RuntimeError(done.stderr.strip().splitlines()[-1])
            result = json.loads(done.stdout)
            detail = (f"alpha {result['search']['best_alpha']:g}, {result['search']['epochs']} "
                      f"epochs, batches of {result['search']['batch_rows']}"
                      if result["search"] else "ridge recipe (closed form)")
            rows.append({"part": "memory", "arm": arm, "size": f"{size}x",
                         "n_rows": args.base_rows * size, "store_mib": mib,
                         "seconds": result["seconds"], "peak_mib": result["peak"] / harness.MIB,
                         "budget_mib": BUDGET / harness.MIB if arm == "streaming" else None,
                         "test_accuracy": result["accuracy"], "detail": detail,
                         "load_before": load})
            harness.log(f"memory {size}x {arm}: {rows[-1]['peak_mib']:.0f} MiB")
        path.unlink()
    return rows


def synthesize(path: Path, n_rows: int, seed: int) -> Path:
    """A store of ``n_rows`` rows made from the real ``bn2`` features: each row a real row
    (train rows for the train split, test rows for the test split, 2:1 as in the real store)
    plus Gaussian noise of 0.05 of each feature's spread; written a block at a time."""
    from featpipe.store.reader import FeatureStore
    from featpipe.store.writer import StoreWriter

    store = FeatureStore.open(STORE)
    real = store.load([LAYER])
    rng = np.random.default_rng(seed)
    n_test = n_rows // 3
    source = np.concatenate([
        rng.choice(np.flatnonzero(real.splits == "train"), n_rows - n_test),
        rng.choice(np.flatnonzero(real.splits == "test"), n_test)])
    spread = real.X.std(axis=0) * 0.05
    dim = real.X.shape[1]
    provenance = {**store.provenance, "layers": [LAYER], "layer_dims": {LAYER: dim},
                  "synthesized_from": str(STORE)}
    writer = StoreWriter.create(
        path, layer_dims={LAYER: dim}, ids=[f"synthetic:{i}" for i in range(n_rows)],
        labels=real.y[source], class_names=real.class_names,
        splits=["train"] * (n_rows - n_test) + ["test"] * n_test, index=np.arange(n_rows),
        provenance=provenance)
    for lo in range(0, n_rows, 8192):
        block = source[lo:lo + 8192]
        noise = rng.normal(size=(len(block), dim)).astype(np.float32) * spread
        writer.write_batch(np.arange(lo, lo + len(block)), {LAYER: real.X[block] + noise})
    writer.finish()
    return path


def write(args, rows: list[dict], suffix: str = "") -> None:
    out = harness.outputs(args, NAME + suffix)
    harness.write_csv(out.csv, rows, COLUMNS)
    table = harness.markdown_table(rows, COLUMNS)
    header = harness.provenance(MODULE, args.argv, " shared with other sessions")
    harness.write_page(out.md, "Scale-out: Dask LocalCluster and out-of-core fit", header,
                       [__doc__.split("\n\n")[1], table])
    harness.log(f"wrote {out.md}")


if __name__ == "__main__":
    sys.exit(main())
