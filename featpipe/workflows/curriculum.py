"""Curriculum workflows: score a source's images (`featpipe curriculum-scores`) with the scorer a
:class:`ScoringSpec` names, and write the scores as CSV.

Examples
--------
>>> spec = ScoringSpec(scoring="transfer", recipe="ridge", cv=3)
>>> table = curriculum_scores("data/clipart-mini/manifest.csv", spec)   # doctest: +SKIP
>>> write_scores("scores.csv", table)                                    # doctest: +SKIP
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass, field

import numpy as np

from featpipe.curriculum.scoring import Scorer, create_scorer
from featpipe.data.imageset import ImageSet
from featpipe.data.sources import open_source
from featpipe.errors import FeatpipeError
from featpipe.fileio import atomic_write, checked_output
from featpipe.params import Interval, validate
from featpipe.spec import ExtractionSpec

__all__ = ["ScoreTable", "ScoringSpec", "curriculum_scores", "make_scorer", "write_scores"]

SCORING_CONSTRAINTS = {
    "scoring": [str],
    "cv": [Interval(int, 2, None)],
    "seed": [int],
    "batch_size": [Interval(int, 1, None)],
    "extraction": [ExtractionSpec],
    "store": [str, os.PathLike, None],
    "recipe": [str, None],
}


@dataclass(frozen=True)
class ScoringSpec:
    """How to score images for a curriculum (the typed form of `curriculum-scores`' options).

    Parameters
    ----------
    scoring : str, default="transfer"
        ``transfer``, ``self-taught``, ``random`` or ``column:NAME``
        (:mod:`featpipe.curriculum.scoring`).
    store : path, default=None
        Transfer scoring: a feature store of the source's images (else they are extracted).
    extraction : ExtractionSpec, default=ExtractionSpec(layers="last")
        Transfer scoring without a store: what to extract.
    layers : str or list of str, default=None
        Transfer scoring: the stored layers to use (None: all).
    recipe : str, default="ridge"
        Transfer scoring: the classical pipeline (:data:`featpipe.classical.recipes.RECIPES`).
    cv : int, default=5
        Out-of-fold folds (transfer and self-taught).
    seed : int, default=0
    batch_size : int, default=32
    device : str, default="auto"
    """

    scoring: str = "transfer"
    store: str | os.PathLike | None = None
    extraction: ExtractionSpec = field(default_factory=lambda: ExtractionSpec(layers="last"))
    layers: str | list[str] | None = None
    recipe: str | None = "ridge"
    cv: int = 5
    seed: int = 0
    batch_size: int = 32
    device: str = "auto"

    def __post_init__(self):
        validate(self.__dict__, SCORING_CONSTRAINTS)


def make_scorer(spec: ScoringSpec) -> Scorer:
    """The scorer ``spec`` names, with the options that scorer takes."""
    kind = spec.scoring.partition(":")[0]
    if kind == "transfer":
        return create_scorer("transfer", store=spec.store, extraction=spec.extraction,
                             layers=spec.layers, recipe=spec.recipe, cv=spec.cv,
                             batch_size=spec.batch_size, device=spec.device)
    if kind == "self-taught":
        return create_scorer("self-taught", cv=spec.cv)
    return create_scorer(spec.scoring)


@dataclass
class ScoreTable:
    """Scores of a source's images: ids, labels (or None) and easiness, row for row."""

    ids: list[str]
    labels: list[str] | None
    scores: np.ndarray
    scoring: str


def curriculum_scores(source, spec: ScoringSpec, *, split: str | None = None) -> ScoreTable:
    """Score every image of ``source`` (or of its split ``split``) as ``spec`` says.

    Parameters
    ----------
    source : path or ImageSet
        An image source (folder, manifest, list, IDX file; ``[start:stop]`` selectors work).
    spec : ScoringSpec
    split : str, default=None
        Score only the images of this split of the manifest (e.g. ``"train"``: the test images
        then neither train nor tune the scorer).
    """
    images = source if isinstance(source, ImageSet) else open_source(source)
    if split is not None:
        if images.splits is None or split not in images.splits:
            have = ", ".join(sorted(set(images.splits))) if images.splits else "none"
            raise FeatpipeError(f"the source has no split '{split}' (splits: {have})")
        images = images.subset(np.array(images.splits) == split)
    scores = make_scorer(spec).score(images, seed=spec.seed)
    return ScoreTable(list(images.ids), images.labels, np.asarray(scores), spec.scoring)


def write_scores(out, table: ScoreTable, *, overwrite: bool = True):
    """Write ``id,label,score,rank`` rows (rank 1 is the easiest) atomically to ``out``."""
    out = checked_output(out, overwrite=overwrite)
    rank = np.empty(len(table.scores), dtype=np.int64)
    rank[np.argsort(-table.scores, kind="stable")] = np.arange(1, len(table.scores) + 1)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["id", "label", "score", "rank"])
    labels = table.labels or [""] * len(table.ids)
    for image_id, label, score, place in zip(table.ids, labels, table.scores, rank):
        writer.writerow([image_id, label, f"{score:.6g}", int(place)])
    return atomic_write(out, buffer.getvalue())
