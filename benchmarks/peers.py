"""Peers on the same images, backbone and layers, in one run (issue 4, comparison 5).

Three comparisons, each featpipe arm and its peer arm run back to back:

- ``multi-layer``: featpipe ``extract(layers="full")`` vs ``thingsvision`` 2.7.3
  (``get_extractor_from_model`` + ``extract_features(module_names=...)``, then mean pooling
  and ``save_features(..., "hdf5")`` per layer): throughput, peak memory, feature agreement.
- ``single-layer``: featpipe ``extract(layers="bn2")`` vs ``img2vec-pytorch`` 1.0.2
  (``Img2Vec.get_vec`` on lists of PIL images) at 224 px, the only size img2vec supports
  for EfficientNets (it hard-codes a 7x7 activation buffer).
- ``fne``: featpipe's ``fne`` recipe (extraction + CV over C; and C=1 without CV) vs the
  ``fne`` package 1.6.5 (``FullNetworkEmbedding.fit/predict`` on DataLoaders with
  ``LinearSVC()``): test accuracy and wall time. ``fne`` hooks only ``Conv2d``/``Linear``
  modules, so it gets the convolution that ends each of featpipe's ``full`` layers.

Every arm gets the SAME embedded Lite0 (``create_backbone(model, image_size).model``, one
fresh instance per arm), the same decoded and preprocessed pixels (featpipe's decoder and the
backbone's preprocessing) and the same number of decoding workers. Each arm runs in its own
subprocess so its peak RSS (``os.wait4``) is its own; ``imports`` is a process that only
imports that arm's modules. Peers are optional: where one is not importable (the project's
``.venv``), its rows say so and the featpipe arms still run.

    .venv-bench/bin/python -m benchmarks.peers [--datasets tuxpaint,openclipart] [--quick]
        [--out DIR] [--manifest NAME=PATH] [--image-size 128]

See ``benchmarks/requirements-peers.txt`` for the benchmark environment.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from benchmarks import common, harness
from benchmarks.harness import MIB, Arm

NAME = "peers"
MODULE = "benchmarks.peers"
DEFAULT_DATASETS = "tuxpaint,openclipart"
SINGLE_LAYER_SIZE = 224  # img2vec hard-codes 7x7 maps for EfficientNets, i.e. 224 px inputs
BATCH_SIZE = 32
FNE_C = 1.0  # the fne package is used as in its paper: LinearSVC() with default C
FEATPIPE = "featpipe"
# comparison -> (featpipe arm, peer arm, the peer's import name)
COMPARISONS = {
    "multi-layer": ("featpipe-full", "thingsvision", "thingsvision"),
    "single-layer": ("featpipe-last", "img2vec", "img2vec_pytorch"),
    "fne": ("featpipe-fne", "fne", "fne"),
}
# what an arm's process imports before it starts (its memory baseline): Arm.imports
FEATPIPE_IMPORTS = ("featpipe.extract", "featpipe.workflows.fit", "featpipe.report.writer")


# --------------------------------------------------------------------------- shared inputs


def backbone(spec: dict, image_size: int | None = None):
    """A fresh instance of the benchmark's backbone."""
    from featpipe.models import create_backbone

    return create_backbone(spec["model"], image_size=image_size or spec["image_size"])


def image_set(spec: dict, split: str | None = None):
    """The spec's images (a seeded subset with ``--quick``), optionally one split."""
    from featpipe.data.sources import open_source

    images = open_source(spec["manifest"], allow_outside=True)
    if spec["indices"] is not None:
        images = images.subset(spec["indices"])
    if split is not None:
        images = images.subset([i for i, s in enumerate(images.splits) if s == split])
    return images


def loader(images, bb, batch_size: int = BATCH_SIZE):
    """A DataLoader of ``(tensor, label)`` with featpipe's decoding and preprocessing."""
    import torch
    from featpipe.extract.run import default_workers
    from featpipe.data.loading import DecodedImages

    dataset = _Labelled(DecodedImages(images, bb.preprocessing,
                                      size_hint=bb.preprocessing.resize_size),
                        images.label_indices())
    n_batches = -(-len(images) // batch_size)
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False,
                                       num_workers=default_workers(n_batches))


class _Labelled:
    """``DecodedImages`` items as ``(tensor, label)``; a failed decode is an error here."""

    def __init__(self, decoded, labels):
        self.decoded, self.labels = decoded, labels

    def __len__(self) -> int:
        return len(self.decoded)

    def __getitem__(self, i: int):
        index, tensor, reason = self.decoded[i]
        if reason is not None:
            raise RuntimeError(f"input {index}: {reason}")
        return tensor, int(self.labels[i])


def safe_batch_size(n: int, batch_size: int = BATCH_SIZE) -> int:
    """fne squeezes each batch's features, so a last batch of ONE image breaks it."""
    return batch_size + 1 if n % batch_size == 1 else batch_size


# --------------------------------------------------------------------------- arms (children)


def arm_featpipe_full(spec: dict) -> dict:
    return _featpipe_extract(spec, common.LAYER_PRESET, spec["image_size"])


def arm_featpipe_last(spec: dict) -> dict:
    return _featpipe_extract(spec, common.LAST_LAYER, SINGLE_LAYER_SIZE)


def _featpipe_extract(spec: dict, layers: str, image_size: int) -> dict:
    from featpipe.extract.run import extract

    out = Path(spec["work"]) / "featpipe.h5"
    result = extract(image_set(spec), out, model=spec["model"], layers=layers,
                     image_size=image_size, batch_size=BATCH_SIZE, progress=False)
    return {"seconds": result.seconds, "n_images": result.n_computed, "output": str(out)}


def arm_thingsvision(spec: dict) -> dict:
    """thingsvision's PyTorch extractor over our model; maps pooled and saved per layer."""
    from featpipe.models.layers import resolve_layers
    from thingsvision import get_extractor_from_model
    from thingsvision.utils.storing import save_features

    bb = backbone(spec)
    layers = resolve_layers(bb, common.LAYER_PRESET)
    images = image_set(spec)
    started = time.perf_counter()
    extractor = get_extractor_from_model(model=bb.model, device="cpu", backend="pt",
                                         preprocess=bb.preprocessing)
    maps = extractor.extract_features(batches=loader(images, bb), module_names=layers,
                                      flatten_acts=False, output_type="ndarray")
    out = Path(spec["work"]) / "thingsvision"
    for layer in layers:
        save_features(maps[layer].mean(axis=(2, 3)), str(out / layer), "hdf5")
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "n_images": len(images), "output": str(out),
            "unpooled_mib": sum(m.nbytes for m in maps.values()) / MIB}


def arm_img2vec(spec: dict) -> dict:
    """img2vec over our model's bn2, fed PIL images decoded by featpipe, saved to HDF5."""
    import h5py
    from featpipe.data.decode import load_rgb

    bb = backbone(spec, SINGLE_LAYER_SIZE)
    images = image_set(spec)
    started = time.perf_counter()
    vectorizer = _given_model_img2vec(bb)
    vectors = []
    for lo in range(0, len(images), BATCH_SIZE):
        batch = [load_rgb(item) for item in images.items[lo:lo + BATCH_SIZE]]
        vectors.append(vectorizer.get_vec(batch))
    out = Path(spec["work"]) / "img2vec.h5"
    with h5py.File(out, "w") as handle:
        handle.create_dataset("features", data=np.concatenate(vectors))
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "n_images": len(images), "output": str(out)}


def _given_model_img2vec(bb):
    """An ``Img2Vec`` handed our model, its ``bn2`` module and its preprocessing (img2vec
    would otherwise download torchvision weights and use ImageNet mean/std)."""
    from img2vec_pytorch.img_to_vec import Img2Vec

    class GivenModel(Img2Vec):
        def _get_model_and_layer(self, model_name, layer):
            return bb.model, dict(bb.model.named_modules())[common.LAST_LAYER]

    # 'efficientnet' in the name selects img2vec's spatial-map path (mean over the 7x7 map)
    vectorizer = GivenModel(cuda=False, model="efficientnet_lite0", layer_output_size=1280)
    vectorizer.transforms = bb.preprocessing
    return vectorizer


def arm_featpipe_fne(spec: dict) -> dict:
    """Extract the train+test images once, then the fne recipe with CV and with C fixed."""
    from featpipe.store.reader import FeatureStore
    from featpipe.workflows.fit import TrainingSpec

    extracted = _featpipe_extract(spec, common.LAYER_PRESET, spec["image_size"])
    store = FeatureStore.open(extracted["output"])
    started = time.perf_counter()
    train, test = store.load(split="train"), store.load(split="test")
    load_seconds = time.perf_counter() - started
    fne = TrainingSpec(recipe="fne", cv=spec["cv"], cache_dir=str(Path(spec["work"], "cache")))
    tuned = common.run_spec(train, test, fne)
    fixed = common.fit_fixed(train, test, fne, {"clf__C": FNE_C})
    base = extracted["seconds"] + load_seconds
    return {"n_images": extracted["n_images"], "extract_seconds": extracted["seconds"],
            "cv": {**_scores(tuned), "seconds": base + tuned["fit_seconds"]
                   + tuned["predict_seconds"], "fit_seconds": tuned["fit_seconds"]},
            "fixed": {**_scores(fixed), "seconds": base + fixed["fit_seconds"]
                      + fixed["predict_seconds"], "fit_seconds": fixed["fit_seconds"]}}


def _scores(row: dict) -> dict:
    return {k: row[k] for k in ("accuracy", "balanced_accuracy", "best_params")}


def arm_fne(spec: dict) -> dict:
    """The fne package: FullNetworkEmbedding(model, conv layers, LinearSVC()).fit/predict."""
    from fne.fne_torch import FullNetworkEmbedding
    from sklearn.metrics import accuracy_score, balanced_accuracy_score
    from sklearn.svm import LinearSVC

    bb = backbone(spec)
    train, test = image_set(spec, "train"), image_set(spec, "test")
    started = time.perf_counter()
    model = FullNetworkEmbedding(bb.model, fne_layers(bb), LinearSVC(C=FNE_C))
    model.fit(loader(train, bb, safe_batch_size(len(train))))
    predicted = model.predict(loader(test, bb, safe_batch_size(len(test))))
    seconds = time.perf_counter() - started
    truth = test.label_indices()
    return {"seconds": seconds, "n_images": len(train) + len(test),
            "accuracy": float(accuracy_score(truth, predicted)),
            "balanced_accuracy": float(balanced_accuracy_score(truth, predicted)),
            "best_params": f"C={FNE_C:g} (fixed)", "layers": fne_layers(bb)}


def fne_layers(bb) -> list[str]:
    """For each of featpipe's ``full`` layers, the last Conv2d inside it, or the last one
    before it (``bn1`` -> ``conv_stem``, ``bn2`` -> ``conv_head``): pre-BN, pre-activation,
    pre-residual, the only kind of module the fne package can hook."""
    import torch
    from featpipe.models.layers import resolve_layers

    names = list(dict(bb.model.named_modules()))
    convs = [n for n, m in bb.model.named_modules() if isinstance(m, torch.nn.Conv2d)]
    picked = []
    for layer in resolve_layers(bb, common.LAYER_PRESET):
        inside = [c for c in convs if c.startswith(layer + ".")]
        before = [c for c in convs if names.index(c) < names.index(layer)]
        picked.append((inside or before)[-1])
    return picked


ARMS = harness.arm_table((
    Arm("featpipe-full", "featpipe extract, layers `full`", arm_featpipe_full, FEATPIPE_IMPORTS),
    Arm("featpipe-last", f"featpipe extract, layer {common.LAST_LAYER} at {SINGLE_LAYER_SIZE} px",
        arm_featpipe_last, FEATPIPE_IMPORTS),
    Arm("featpipe-fne", "featpipe fne recipe: CV over C, and C=1", arm_featpipe_fne,
        FEATPIPE_IMPORTS),
    Arm("thingsvision", "thingsvision extractor, mean-pooled, HDF5 per layer", arm_thingsvision,
        ("featpipe.extract", "thingsvision", "thingsvision.utils.storing")),
    Arm("img2vec", "img2vec-pytorch get_vec on bn2", arm_img2vec,
        ("featpipe.extract", "img2vec_pytorch.img_to_vec", "h5py")),
    Arm("fne", "fne package FullNetworkEmbedding with LinearSVC()", arm_fne,
        ("featpipe.extract", "fne.fne_torch", "sklearn.svm")),
))


def child_main(spec_json: str) -> None:
    """Entry point of an arm's subprocess: run it (or only import its modules)."""
    import importlib

    spec = json.loads(spec_json)
    arm = ARMS[spec["arm"]]
    for module in arm.imports:
        importlib.import_module(module)
    result = {} if spec.get("imports_only") else arm.run(spec)
    harness.write_json(Path(spec["result"]), result)


# --------------------------------------------------------------------------- parent


def run_child(spec: dict) -> tuple[dict | None, float, str]:
    """Run one arm in a subprocess; (result or None, peak RSS MiB, error line)."""
    code = "import sys; from benchmarks.peers import child_main; child_main(sys.argv[1])"
    rss, _, rc, err = harness.peak_rss_mib([sys.executable, "-c", code, json.dumps(spec)])
    if rc != 0:
        return None, rss, err or f"exit code {rc}"
    return json.loads(Path(spec["result"]).read_text()), rss, ""


class Runner:
    """Runs arms for one dataset and remembers each arm's imports-only RSS."""

    def __init__(self, args, work: Path):
        self.args, self.work = args, work
        self.imports_rss: dict[tuple, float] = {}

    def spec(self, arm: str, dataset: str, indices) -> dict:
        folder = Path(tempfile.mkdtemp(prefix=f"{arm}-", dir=self.work))
        return {"arm": arm, "dataset": dataset, "manifest": str(self.args.manifests[dataset]),
                "indices": indices, "model": self.args.model, "image_size": self.args.image_size,
                "cv": common.cv_folds(self.args), "work": str(folder),
                "result": str(folder / "result.json")}

    def imports(self, spec: dict) -> float:
        """Peak RSS of a process importing only the arm's modules (measured once per set)."""
        key = ARMS[spec["arm"]].imports
        if key not in self.imports_rss:
            _, rss, err = run_child({**spec, "imports_only": True})
            self.imports_rss[key] = float("nan") if err else rss
        return self.imports_rss[key]

    def run(self, arm: str, dataset: str, indices) -> dict:
        spec = self.spec(arm, dataset, indices)
        load = harness.load_average()[0]
        result, rss, err = run_child(spec)
        base = self.imports(spec)
        row = {"tool": arm, "load": load, "peak_rss_mib": rss, "imports_rss_mib": base,
               "extra_mib": rss - base, "status": "ok" if result is not None else f"failed: {err}"}
        harness.log(f"[{dataset}] {arm}: {row['status']}, peak RSS {rss:.0f} MiB (load {load:.2f})")
        return {**row, "result": result or {}}


def peer_missing(module: str) -> str | None:
    """Why a peer cannot run in this interpreter (None when it can be imported)."""
    if importlib.util.find_spec(module) is None:
        return (f"skipped: `{module}` is not importable in {sys.executable} (install "
                "benchmarks/requirements-peers.txt into .venv-bench)")
    return None


def quick_indices(manifest: Path, seed: int) -> list[int]:
    """``--quick``: a few seeded images per class and split (common.QUICK_PER_CLASS)."""
    from featpipe.data.sources import open_source

    images = open_source(manifest, allow_outside=True)
    rng = np.random.default_rng(seed)
    labels, splits = np.array(images.labels), np.array(images.splits)
    picked = []
    for split, per_class in common.QUICK_PER_CLASS.items():
        for label in sorted(set(images.labels)):
            rows = np.flatnonzero((labels == label) & (splits == split))
            picked += rng.permutation(rows)[:per_class].tolist()
    return sorted(picked)


def compare(runner: Runner, dataset: str, comparison: str, indices) -> list[dict]:
    """Both arms of one comparison, back to back; rows without the raw results."""
    ours, peer, module = COMPARISONS[comparison]
    first = runner.run(ours, dataset, indices)
    missing = peer_missing(module)
    second = {"tool": peer, "status": missing} if missing else runner.run(peer, dataset, indices)
    rows = ROW_BUILDERS[comparison](first, second)
    return [{"dataset": dataset, "comparison": comparison, **row} for row in rows]


def extraction_rows(ours: dict, peer: dict) -> list[dict]:
    """Throughput and memory of both arms, and how far the peer's features are from ours."""
    rows = [_extraction_row(ours), _extraction_row(peer)]
    if ours["status"] == "ok" and peer["status"] == "ok":
        rows[1]["max_abs_diff"] = feature_difference(ours["result"]["output"],
                                                     peer["result"]["output"])
    return rows


def _extraction_row(arm: dict) -> dict:
    result = arm.get("result", {})
    seconds, n = result.get("seconds", float("nan")), result.get("n_images", 0)
    return {**{k: v for k, v in arm.items() if k != "result"}, "n_images": n,
            "seconds": seconds, "images_per_second": n / seconds if n else float("nan"),
            "unpooled_mib": result.get("unpooled_mib", float("nan"))}


def fne_rows(ours: dict, peer: dict) -> list[dict]:
    """featpipe with CV, featpipe with C fixed like the peer, and the fne package."""
    base = {k: v for k, v in ours.items() if k != "result"}
    rows = []
    for variant, label in (("cv", "featpipe fne (CV over C)"), ("fixed", "featpipe fne (C=1)")):
        part = ours["result"].get(variant, {})
        rows.append({**base, "tool": label, "n_images": ours["result"].get("n_images", 0),
                     **part, "extract_seconds": ours["result"].get("extract_seconds")})
    result = peer.get("result", {})
    rows.append({**{k: v for k, v in peer.items() if k != "result"}, "tool": "fne package",
                 **{k: v for k, v in result.items() if k != "layers"}})
    return rows


ROW_BUILDERS = {"multi-layer": extraction_rows, "single-layer": extraction_rows,
                "fne": fne_rows}


def feature_difference(ours: str, theirs: str) -> float:
    """Largest absolute difference between featpipe's store and a peer's HDF5 output."""
    import h5py
    from featpipe.store.reader import FeatureStore

    store = FeatureStore.open(ours)
    data = store.load()
    path = Path(theirs)
    if path.is_dir():  # thingsvision: <dir>/<layer>/features.hdf5
        columns = []
        for layer in data.layer_slices:
            with h5py.File(path / layer / "features.hdf5", "r") as handle:
                columns.append(handle["features"][:])
        peer = np.concatenate(columns, axis=1)
    else:
        with h5py.File(path, "r") as handle:
            peer = handle["features"][:]
    return float(np.max(np.abs(data.X - peer)))


# --------------------------------------------------------------------------- report


def ratio_rows(rows: list[dict]) -> list[dict]:
    """Per comparison: peer time / featpipe time, peer memory / featpipe memory, accuracy."""
    out = []
    for (dataset, comparison), group in _groups(rows).items():
        peer = group[-1]
        for ours in group[:-1]:  # fne: featpipe with CV, then with C fixed like the peer
            base = {"dataset": dataset, "comparison": comparison, "featpipe": ours["tool"],
                    "peer": peer["tool"]}
            if peer.get("status") != "ok" or ours.get("status") != "ok":
                out.append({**base, "note": peer.get("status") or ours.get("status")})
                continue
            out.append({**base, "time_ratio": _ratio(peer, ours, "seconds"),
                        "peak_rss_ratio": _ratio(peer, ours, "peak_rss_mib"),
                        "extra_rss_ratio": _ratio(peer, ours, "extra_mib"),
                        "accuracy_featpipe": ours.get("accuracy"),
                        "accuracy_peer": peer.get("accuracy"), "note": ""})
    return out


def _groups(rows: list[dict]) -> dict:
    groups: dict = {}
    for row in rows:
        groups.setdefault((row["dataset"], row["comparison"]), []).append(row)
    return groups


def _ratio(peer: dict, ours: dict, key: str) -> float:
    a, b = peer.get(key), ours.get(key)
    return a / b if a is not None and b else float("nan")


def sections(rows: list[dict]) -> list[str]:
    extraction = [r for r in rows if r["comparison"] != "fne"]
    fne = [r for r in rows if r["comparison"] == "fne"]
    return [
        "## Ratios (peer / featpipe; > 1 means featpipe is faster or leaner)\n\n"
        "`time` = wall time; `peak RSS` = whole process; `extra RSS` = peak minus a process "
        "that only imports the arm's modules. For `fne` the featpipe side is once the "
        "CV-tuned recipe (extraction + k-fold search over C + refit + prediction) and once "
        "C=1 without CV, the same work as the peer. Environment: `.venv-bench` from "
        "`benchmarks/requirements-peers.txt`; thingsvision 2.7.3 pins torchvision==0.15.2 "
        "and tensorflow<2.16, so it is installed with `--no-deps` next to featpipe's torch "
        "and run through its PyTorch path.\n\n"
        + harness.markdown_table(ratio_rows(rows),
                                ["dataset", "comparison", "featpipe", "peer", "time_ratio",
                                 "peak_rss_ratio", "extra_rss_ratio", "accuracy_featpipe",
                                 "accuracy_peer", "note"],
                                ["dataset", "comparison", "featpipe arm", "peer", "time",
                                 "peak RSS", "extra RSS", "featpipe acc", "peer acc", "note"]),
        "## Extraction: throughput and peak memory\n\n"
        "`max |Δ|` = largest absolute difference between the peer's pooled features and "
        "featpipe's store (same pixels, same model, same layers). `unpooled MiB` = the "
        "activation maps thingsvision holds in memory before they can be pooled.\n\n"
        + harness.markdown_table(extraction,
                                ["dataset", "comparison", "tool", "status", "n_images",
                                 "seconds", "images_per_second", "peak_rss_mib",
                                 "imports_rss_mib", "extra_mib", "unpooled_mib",
                                 "max_abs_diff", "load"],
                                ["dataset", "comparison", "tool", "status", "images", "wall s",
                                 "img/s", "peak RSS MiB", "imports MiB", "extra MiB",
                                 "unpooled MiB", "max |Δ|", "load"]),
        "## FNE: accuracy and wall time on the test split\n\n"
        "Wall time covers extraction of train and test images, fitting and predicting. "
        "featpipe: standardization from the training split, discretization, LinearSVC "
        "(CV over C, or C=1). fne package: the convolution ending each featpipe layer "
        "(pre-BN, pre-activation), its own standardization (test data with training "
        "statistics), LinearSVC(C=1).\n\n"
        + harness.markdown_table(fne,
                                ["dataset", "tool", "status", "n_images", "seconds",
                                 "accuracy", "balanced_accuracy", "best_params",
                                 "peak_rss_mib", "extra_mib", "load"],
                                ["dataset", "tool", "status", "images", "wall s", "accuracy",
                                 "balanced acc", "C", "peak RSS MiB", "extra MiB", "load"]),
    ]


def plot(rows: list[dict], path: Path) -> Path:
    """Wall time and peak RSS of every arm, grouped by dataset and comparison."""
    fig, (left, right) = harness.figure(2, width=6.5)
    labels = [f"{r['dataset']} {r['comparison']}\n{r['tool']}" for r in rows]
    for axis, key, title in ((left, "seconds", "wall time (s)"),
                             (right, "peak_rss_mib", "peak RSS (MiB)")):
        values = [float(r.get(key) or 0.0) for r in rows]
        colours = ["tab:blue" if r["tool"].startswith(FEATPIPE) else "tab:orange"
                   for r in rows]
        axis.barh(np.arange(len(rows)), values, color=colours)
        axis.set_yticks(np.arange(len(rows)), labels, fontsize=7)
        axis.invert_yaxis()
        axis.set_xlabel(title)
    left.set_title("featpipe (blue) vs peers (orange)")
    return harness.save_figure(fig, path)


def main(argv: Sequence[str] | None = None) -> int:
    p = harness.parser(__doc__.splitlines()[0])
    p.set_defaults(datasets=DEFAULT_DATASETS)
    p.add_argument("--comparisons", default=",".join(COMPARISONS),
                   help="subset of %(default)s")
    args = harness.parse_args(p, argv)
    comparisons = harness.choose(args.comparisons, COMPARISONS, COMPARISONS, "comparison")
    rows = []
    with tempfile.TemporaryDirectory(prefix="peers-") as tmp:
        runner = Runner(args, Path(tmp))
        for dataset in args.manifests:
            manifest = Path(args.manifests[dataset])
            indices = quick_indices(manifest, args.seed) if args.quick else None
            for comparison in comparisons:
                rows += compare(runner, dataset, comparison, indices)
    csv_path, md_path, png_path = harness.outputs(args, NAME)
    harness.write_csv(csv_path, rows)
    common.write_markdown(md_path, "Peers: same images, backbone and layers (issue 4, #5)",
                          sections(rows), args, MODULE)
    plot(rows, png_path)
    harness.log(f"wrote {csv_path}, {md_path}, {png_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
