"""The typed settings of stage 1: :class:`ExtractionSpec` says which features a store holds.

A spec is what :func:`featpipe.extract.extract` takes, what a store's provenance is built from
(:meth:`ExtractionSpec.provenance_fields`) and rebuilt into (:meth:`ExtractionSpec.from_provenance`),
and, through each field's *role*, what decides that two sets of features are the same kind
(:mod:`featpipe.provenance`). Adding a stage-1 setting means adding a field here, an option to the
CLI adapter, and the code that uses it; nothing else.

Examples
--------
>>> spec = ExtractionSpec(layers="last", image_size=128)
>>> spec.pool, spec.image_size
('mean', 128)
>>> ExtractionSpec(pool="median")
Traceback (most recent call last):
...
featpipe.errors.UsageError: `pool` must be one of mean, max, meanmax, none, got 'median'
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Mapping

from featpipe.errors import UsageError

DEFAULT_BACKBONE = "efficientnet_lite0"
POOLING = ("mean", "max", "meanmax", "none")
PRESETS = ("last", "stages", "full")
TOKEN_POOLING = ("cls", "mean")
DTYPES = ("float32", "float16")
COMPRESSIONS = (None, "lzf", "gzip")
AMP = (None, "bf16", "fp16")
DECODE = ("auto", "cpu", "gpu")
RESIZE = ("crop", "pad", "squash")
WHITE = (255, 255, 255)
#: Largest image (width * height) decoded by default. Pillow's own default (~89 Mpixel, error
#: above ~179 Mpixel) rejects real scanned/clip-art PNGs of ~170 Mpixel (e.g. OpenClipart);
#: 200 Mpixel admits them while still refusing absurd sizes (~600 MB once decoded as RGB).
DEFAULT_MAX_PIXELS = 200_000_000

# Roles, from strictest to loosest (see featpipe.provenance):
FEATURE = "feature"  # different values give a different kind of features
RESUME = "resume"  # must match to resume an unfinished store, too
RECORD = "record"  # recorded in the provenance only
RUN = "run"  # how to run; not recorded


_SAME = object()


def _setting(default, role: str, choices: tuple | None = None, absent=_SAME,
             rebuilt: bool = True):
    """A spec field; ``absent`` is what a file that does not record it means (older files);
    ``rebuilt=False``: a recorded choice of the machine that ran, which
    :meth:`ExtractionSpec.from_provenance` leaves at its default (a GPU decode is no order to
    re-extract on a GPU)."""
    return field(default=default, metadata={
        "role": role, "choices": choices, "absent": default if absent is _SAME else absent,
        "rebuilt": rebuilt})


def checked_replace(spec, changes: dict, what: str):
    """``dataclasses.replace(spec, **changes)``; an unknown field is a one-line error."""
    known = {f.name for f in dataclasses.fields(spec)}
    unknown = sorted(set(changes) - known)
    if unknown:
        raise UsageError(f"unknown {what} setting(s) {', '.join(unknown)}; "
                         f"use {', '.join(sorted(known))}")
    return dataclasses.replace(spec, **changes)


@dataclass(frozen=True)
class ExtractionSpec:
    """Which features stage 1 extracts: backbone, weights, layers, pooling, size, storage.

    Parameters
    ----------
    model : str, default "efficientnet_lite0"
        Backbone name (:func:`featpipe.models.list_backbones`).
    weights : str or None
        A local ``.pth``/``.safetensors`` state_dict file; None: the backbone's own weights.
    pretrained : bool, default True
        False: deterministic random initialisation (ignored when ``weights`` is given).
    layers : str or tuple of str, default "full"
        A preset (``last``, ``stages``, ``full``) or node names.
    pool : {"mean", "max", "meanmax", "none"}
    token_pool : {"cls", "mean"}
        Pooling of transformer tokens.
    image_size : int or None
        Side of the network input; None: the weights' native size.
    resize : {"pad", "crop", "squash"}, default "pad"
        How an image becomes the square input: ``pad`` letterboxes (keeps every pixel and the
        aspect ratio, pads with ``pad_color``), ``crop`` resizes the shorter side to
        ``image_size / crop_pct`` and center-crops (timm's convention; loses the sides of
        non-square images), ``squash`` resizes to the square ignoring the aspect ratio. The
        default was chosen from data (benchmarks/RESULTS.md, comparison 7: crop scored lowest
        on photos and drawings). Files written before this setting existed mean ``crop``.
    crop_pct : float or None
        The kept fraction in ``crop`` mode, in (0, 1]; None: the weights' own (0.875 for Lite0).
    pad_color : tuple of 3 ints
        Padding colour in ``pad`` mode (transparent images are composited on white).
    dtype : {"float32", "float16"}
        Stored dtype.
    compression : {None, "lzf", "gzip"}
    amp : {None, "bf16", "fp16"}
        Autocast on the extraction device (CUDA or CPU).
    channels_last : bool
    decode : {"auto", "cpu", "gpu"}, default "auto"
        Where JPEGs are decoded and resized: ``gpu`` in batches on the CUDA device
        (:mod:`featpipe.extract.gpu_decode`; other formats and files it refuses take the CPU
        path), ``cpu`` in decode workers; ``auto`` is ``gpu`` on a CUDA device, else ``cpu``.
        The store records the resolved choice (the two resize with torch and Pillow: values
        agree within about a grey level, not bit for bit).
    compile : bool, default False
        ``torch.compile`` the capture (static shapes: the last batch is padded, then trimmed).
    force : bool
        Allow ``pool="none"`` above the per-layer size cap.
    max_pixels : int
        Images larger than this (width x height) are recorded as failures (decompression bombs).
    """

    model: str = _setting(DEFAULT_BACKBONE, FEATURE)
    weights: str | None = _setting(None, RESUME)
    pretrained: bool = _setting(True, RESUME)
    layers: str | tuple[str, ...] = _setting("full", RESUME)
    pool: str = _setting("mean", FEATURE, POOLING)
    token_pool: str = _setting("cls", FEATURE, TOKEN_POOLING)
    image_size: int | None = _setting(None, RECORD)
    resize: str = _setting("pad", FEATURE, RESIZE, absent="crop")
    crop_pct: float | None = _setting(None, RECORD)
    pad_color: tuple[int, int, int] = _setting(WHITE, RECORD)
    dtype: str = _setting("float32", RESUME, DTYPES)
    compression: str | None = _setting(None, RESUME, COMPRESSIONS)
    amp: str | None = _setting(None, RECORD, AMP)
    channels_last: bool = _setting(False, RECORD)
    decode: str = _setting("auto", RECORD, DECODE, absent="cpu", rebuilt=False)
    compile: bool = _setting(False, RECORD, rebuilt=False)
    force: bool = _setting(False, RUN)
    max_pixels: int = _setting(DEFAULT_MAX_PIXELS, RUN)

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            choices = f.metadata["choices"]
            value = getattr(self, f.name)
            if choices is not None and value not in choices:
                shown = ", ".join(str(c) for c in choices if c is not None)
                raise UsageError(f"`{f.name}` must be one of {shown}, got {value!r}")
        if isinstance(self.layers, list):
            object.__setattr__(self, "layers", tuple(self.layers))
        object.__setattr__(self, "pad_color", tuple(self.pad_color))
        if len(self.pad_color) != 3 or not all(0 <= int(v) <= 255 for v in self.pad_color):
            raise UsageError(f"`pad_color` must be 3 values in 0..255, got {self.pad_color}")
        if self.crop_pct is not None and not 0 < self.crop_pct <= 1:
            raise UsageError(f"`crop_pct` must be in (0, 1], got {self.crop_pct}")
        if self.max_pixels < 1:
            raise UsageError(f"`max_pixels` must be >= 1, got {self.max_pixels}")
        if self.image_size is not None and int(self.image_size) < 8:
            raise UsageError(f"`image_size` {self.image_size} is too small; use at least 8 pixels")

    @classmethod
    def fields_with_role(cls, *roles: str) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls) if f.metadata["role"] in roles)

    def replace(self, **changes) -> ExtractionSpec:
        """A copy with ``changes``; an unknown setting is a one-line error."""
        return checked_replace(self, changes, "extraction")

    def provenance_fields(self) -> dict[str, Any]:
        """The recorded settings, as JSON values (``weights``/``pretrained`` are recorded by the
        backbone as its weights description, ``layers`` and ``image_size`` once resolved)."""
        recorded = self.fields_with_role(FEATURE, RESUME, RECORD)
        out = {name: getattr(self, name) for name in recorded
               if name not in ("weights", "pretrained")}
        out["layers"] = [self.layers] if isinstance(self.layers, str) else list(self.layers)
        out["pad_color"] = list(self.pad_color)
        return out

    @classmethod
    def absent_values(cls) -> dict[str, Any]:
        """What each recorded setting means in a file that does not record it."""
        return {f.name: f.metadata["absent"] for f in dataclasses.fields(cls)
                if f.metadata["role"] != RUN and f.name not in ("weights", "pretrained", "layers")}

    @classmethod
    def from_provenance(cls, provenance: Mapping[str, Any]) -> ExtractionSpec:
        """The spec that re-extracts features like those described by ``provenance`` (a store's
        or a model's). Keys missing from older files take the field's default; so do the
        machine's own choices (``decode``, ``compile``)."""
        values = cls.absent_values()
        for f in dataclasses.fields(cls):
            if not f.metadata["rebuilt"]:
                values[f.name] = f.default
            elif f.name in provenance and f.metadata["role"] != RUN \
                    and f.name not in ("weights", "pretrained"):
                values[f.name] = provenance[f.name]
        if "layers" in values:
            values["layers"] = tuple(values["layers"])
        description = provenance.get("weights") or ""
        if description.startswith("file:"):
            values["weights"] = description[len("file:"):]
        values["pretrained"] = description != "random-init"
        return cls(**values)

    def cache_key(self) -> str:
        """A digest of every setting (for caching features by settings)."""
        payload = json.dumps(dataclasses.asdict(self), sort_keys=True, default=str)
        return hashlib.sha256(payload.encode()).hexdigest()
