"""Save and load fitted pipelines with ``skops.io`` (no pickle) plus their provenance.

A model file is a skops archive holding one dict::

    {"format": "featpipe-model/1", "featpipe_version": ..., "pipeline": <fitted Pipeline>,
     "provenance": {backbone, weights sha256, layers, pooling, preprocessing, image size...},
     "training": {recipe, best params, scores, class names...}}

Loading audits the types in the file first (``skops.io.get_untrusted_types``). skops
trusts scikit-learn and NumPy types itself; featpipe trusts its own estimator classes.
Anything else is refused unless the caller trusts it explicitly (``trusted=``).

Example
-------
>>> import tempfile, pathlib
>>> from sklearn.datasets import load_iris
>>> from featpipe.classical.recipes import build_recipe
>>> X, y = load_iris(return_X_y=True)
>>> pipe = build_recipe("fne")[0].fit(X, y)
>>> path = pathlib.Path(tempfile.mkdtemp()) / "model.skops"
>>> _ = save_model(path, pipe, provenance={"backbone": "none"}, training={"recipe": "fne"})
>>> loaded, provenance, training = load_model(path)
>>> (loaded.predict(X) == pipe.predict(X)).all(), provenance["backbone"]
(np.True_, 'none')
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.abc
import inspect
import sys
import io
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError
from sklearn.pipeline import Pipeline
from sklearn.utils.validation import check_is_fitted

from featpipe import __version__
from featpipe.errors import FeatpipeError
from featpipe.fileio import atomic_write

MODEL_FORMAT = "featpipe-model/1"
#: skops lists scikit-learn's estimators at import by walking every sklearn package, which
#: imports sklearn's torch compatibility shim and so torch itself (~500 MB resident) although
#: no model needs it; that shim holds no estimator, so it is skipped during that import.
_SKIPPED_WHILE_IMPORTING_SKOPS = "sklearn.externals.array_api_compat.torch"


class _Skip(importlib.abc.MetaPathFinder):
    def __init__(self, name: str):
        self.name = name

    def find_spec(self, fullname, path=None, target=None):
        if fullname == self.name:
            raise ImportError(f"{fullname} skipped while importing skops")
        return None


def skops_io():
    """``skops.io``, imported without pulling torch in (see above) unless torch is already
    loaded; the out-of-core fit's memory budget depends on it."""
    if "skops.io" not in sys.modules and "torch" not in sys.modules:
        skip = _Skip(_SKIPPED_WHILE_IMPORTING_SKOPS)
        sys.meta_path.insert(0, skip)
        try:
            importlib.import_module("skops.io")
        finally:
            sys.meta_path.remove(skip)
    return importlib.import_module("skops.io")


def save_model(path, pipeline: Pipeline, *, provenance: Mapping, training: Mapping) -> Path:
    """Save a fitted pipeline with its provenance and training summary.

    The file is written under a temporary name in the same folder and renamed, so a
    failure leaves nothing behind.

    Parameters
    ----------
    path : str or Path
        Destination (``.skops`` by convention); its folder is created if missing.
    pipeline : Pipeline
        A fitted pipeline (NumPy attributes; move array-API fits back to NumPy first).
    provenance : dict
        Where the features came from: backbone, weights sha256, layers, pooling,
        preprocessing, image size... (JSON-like values).
    training : dict
        How the model was chosen: recipe, best parameters, scores, class names...

    Returns
    -------
    Path
    """
    try:
        check_is_fitted(pipeline)
    except (NotFittedError, TypeError):
        raise FeatpipeError(
            "the pipeline is not fitted; fit it (or run a search) before saving"
        ) from None
    skops_io()  # imported without torch, before _dump's imports

    payload = {
        "format": MODEL_FORMAT,
        "featpipe_version": __version__,
        "pipeline": pipeline,
        "provenance": dict(provenance),
        "training": dict(training),
    }
    path = Path(path)
    created = [folder for folder in [path.parent, *path.parent.parents] if not folder.exists()]
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        return atomic_write(path, lambda f: _dump(payload, f))
    except (TypeError, NotImplementedError) as error:
        for folder in created:  # the archive is written as it is made: leave nothing behind
            with contextlib.suppress(OSError):  # not empty: someone else's now
                folder.rmdir()
        raise FeatpipeError(
            f"cannot save this model safely with skops: {_unserializable_parts(payload)} "
            f"({' '.join(str(error).split())}); "
            "use another reducer or classifier for this step"
        ) from None


def _dump(payload: Mapping, f) -> None:
    """``skops.io.dump(payload, f)``, the archive written into ``f`` as it is made: skops
    builds it in memory and copies it out, which held two more copies of a ``umap-knn``
    model's training rows (12k Fashion-MNIST images: 2 x 95 MiB). The same archive: skops's
    own steps, with its own state functions."""
    import json

    import skops
    from skops.io import _utils

    if not all(hasattr(_utils, name) for name in ("SaveContext", "get_state")):
        skops_io().dump(payload, f)  # a skops whose internals moved: its own, in memory
        return
    with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED) as zip_file:
        context = _utils.SaveContext(zip_file=zip_file)
        state = _utils.get_state(payload, context)
        context.clear_memo()
        state["protocol"] = context.protocol
        state["_skops_version"] = skops.__version__
        zip_file.writestr("schema.json", json.dumps(state, indent=2))


def _unserializable_parts(payload: Mapping) -> str:
    sio = skops_io()

    parts = []
    pipeline = payload["pipeline"]
    for name, step in getattr(pipeline, "steps", []):
        try:
            sio.dumps(step)
        except Exception:  # noqa: BLE001 - we only want to name the culprit
            parts.append(f"step {name!r} ({type(step).__name__})")
    for key in ("provenance", "training"):
        try:
            sio.dumps(payload[key])
        except Exception:  # noqa: BLE001
            parts.append(f"the {key} dict")
    return ", ".join(parts) or "the pipeline"


def _is_featpipe_estimator(type_name: str) -> bool:
    """True for featpipe's own estimator classes (importing featpipe modules only)."""
    module_name, _, attribute = type_name.rpartition(".")
    if module_name != "featpipe" and not module_name.startswith("featpipe."):
        return False
    try:
        candidate = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError):
        return False
    return inspect.isclass(candidate) and issubclass(candidate, BaseEstimator)


#: Modules of featpipe's estimators in files written before the package layout of 0.2, and where
#: those classes live now. skops names each object's class by module path; a legacy name is
#: mapped on load (never executed), so old model files keep loading and predicting.
LEGACY_MODULES = {"featpipe.transformers": "featpipe.classical.transformers"}


def _read_archive(path) -> bytes:
    """The bytes of a model file, with legacy module paths mapped to today's."""
    path = Path(path)
    if not path.is_file():
        raise FeatpipeError(f"model file {path} does not exist; check the path")
    data = path.read_bytes()
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            schema = archive.read("schema.json").decode("utf-8")
            mapped = schema
            for old, new in LEGACY_MODULES.items():
                mapped = mapped.replace(f'"__module__": "{old}"', f'"__module__": "{new}"')
            if mapped == schema:
                return data
            members = {name: archive.read(name) for name in archive.namelist()}
    except (zipfile.BadZipFile, KeyError, UnicodeDecodeError):
        return data  # reported by the caller as "not a featpipe model file"
    members["schema.json"] = mapped.encode("utf-8")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def untrusted_types(path) -> list[str]:
    """Types in a model file that neither skops nor featpipe trusts by default.

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    list of str
        Sorted full type names; empty for a file featpipe would load as is.
    """
    sio = skops_io()

    data = _read_archive(path)
    try:
        found = sio.get_untrusted_types(data=data)
    except (zipfile.BadZipFile, KeyError, ValueError, OSError):
        raise FeatpipeError(
            f"{path} is not a featpipe model file (skops archive); save one with featpipe"
        ) from None
    return [name for name in found if not _is_featpipe_estimator(name)]


def load_model(path, *, trusted: bool | Sequence[str] = False) -> tuple[Pipeline, dict, dict]:
    """Load a model saved by :func:`save_model`, refusing unknown types.

    Parameters
    ----------
    path : str or Path
    trusted : bool or sequence of str, default=False
        Types to allow beyond those trusted by default: True allows every type in the
        file (only for files you trust), a sequence allows the named types.

    Returns
    -------
    pipeline : Pipeline
    provenance : dict
    training : dict

    Raises
    ------
    FeatpipeError
        Missing file, not a model file, or untrusted types (listed in the message).
    """
    sio = skops_io()

    path = Path(path)
    unknown = untrusted_types(path)
    if trusted is not True:
        allowed = set(trusted or ())
        refused = [name for name in unknown if name not in allowed]
        if refused:
            raise FeatpipeError(
                f"{path} contains types featpipe does not trust: {', '.join(refused)}; "
                "if you trust the file, allow these types with `trusted=NAMES`"
            )
    data = _read_archive(path)
    all_types = sio.get_untrusted_types(data=data)  # featpipe's own plus the allowed ones
    payload = sio.loads(data, trusted=all_types)
    if not isinstance(payload, dict) or payload.get("format") != MODEL_FORMAT:
        raise FeatpipeError(
            f"{path} is a skops file but not a featpipe model ({MODEL_FORMAT}); "
            "save one with featpipe"
        )
    return payload["pipeline"], dict(payload["provenance"]), dict(payload["training"])

