"""Curriculum workflows: score a source's images (`featpipe curriculum-scores`), and fine-tune
through a curriculum (`featpipe finetune --curriculum ...`): the training images are scored, a
:class:`~featpipe.curriculum.sampler.CurriculumPlan` orders and paces them, and the fine-tuning
loop draws its batches from it, logging the pacing of every epoch.

Self-taught scoring trains through the same fine-tuning loop (:func:`self_taught_trainer`).

Examples
--------
>>> spec = ScoringSpec(scoring="transfer", recipe="ridge", cv=3)
>>> table = curriculum_scores("data/clipart-mini/manifest.csv", spec)   # doctest: +SKIP
>>> write_scores("scores.csv", table)                                    # doctest: +SKIP
>>> curriculum = CurriculumSpec(spec, Pacing("exponential", start=0.2, inc=1.9, step_length=50))
>>> finetune_with_curriculum("data/clipart-mini", "run/", FinetuneSpec(epochs=5),
...                          curriculum)                                  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
from dataclasses import dataclass, field

import numpy as np

from featpipe.curriculum.ordering import ORDERINGS
from featpipe.curriculum.pacing import Pacing
from featpipe.curriculum.sampler import CurriculumPlan
from featpipe.curriculum.scoring import Scorer, create_scorer
from featpipe.data.imageset import ImageSet
from featpipe.data.sources import open_source
from featpipe.errors import FeatpipeError
from featpipe.fileio import atomic_write, checked_output
from featpipe.finetuning.spec import FinetuneSpec
from featpipe.params import Interval, Options, validate
from featpipe.spec import ExtractionSpec

__all__ = ["CurriculumSpec", "ScoreTable", "ScoringSpec", "curriculum_scores",
           "finetune_with_curriculum", "make_scorer", "self_taught_trainer", "write_scores"]

#: The scores a curriculum fine-tuning run used, written into its RUN_DIR.
SCORES_FILE = "curriculum_scores.csv"

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


def make_scorer(spec: ScoringSpec, *, trainer: FinetuneSpec | None = None,
                workers: int | None = None) -> Scorer:
    """The scorer ``spec`` names, with the options that scorer takes.

    Self-taught scoring trains with ``trainer`` (default: ``self_taught_spec()`` at the
    extraction's image size).
    """
    kind = spec.scoring.partition(":")[0]
    if kind == "transfer":
        return create_scorer("transfer", store=spec.store, extraction=spec.extraction,
                             layers=spec.layers, recipe=spec.recipe, cv=spec.cv,
                             batch_size=spec.batch_size, device=spec.device)
    if kind == "self-taught":
        trainer = trainer or self_taught_spec(FinetuneSpec(
            model=spec.extraction.model, weights=spec.extraction.weights,
            image_size=spec.extraction.image_size))
        return create_scorer("self-taught", cv=spec.cv, train_and_predict=self_taught_trainer(
            trainer, device=spec.device, workers=workers))
    return create_scorer(spec.scoring)


#: Self-taught scoring's brief training: epochs, no early stopping.
SELF_TAUGHT_EPOCHS = 2


def self_taught_spec(spec: FinetuneSpec, epochs: int = SELF_TAUGHT_EPOCHS) -> FinetuneSpec:
    """``spec`` shortened for self-taught scoring: ``epochs`` epochs, no early stopping."""
    return spec.replace(epochs=epochs, patience=None, head_init="random")


def self_taught_trainer(spec: FinetuneSpec, *, device: str = "auto",
                        workers: int | None = None):
    """``train_and_predict(train, held_out, seed)`` for self-taught scoring: fine-tune ``spec``
    (its own validation split of ``train`` chooses the epoch) with no curriculum, then return
    the network's class probabilities for ``held_out`` (columns: ``train.class_names``)."""
    def train_and_predict(train: ImageSet, held_out: ImageSet, seed: int) -> np.ndarray:
        from featpipe.finetuning.data import split_train_val
        from featpipe.finetuning.loop import train as train_network
        from featpipe.finetuning.predict import classify

        seeded = spec.replace(seed=seed)
        fit_set, val_set = split_train_val(train, seeded.val_split, seed)
        result = train_network(seeded, fit_set, val_set, class_names=train.class_names,
                               device=device, workers=workers)
        classified = classify(result.tuning.model, result.tuning.backbone.preprocessing,
                              held_out, device=device)
        proba = np.full((len(held_out), len(train.class_names)), np.nan)
        proba[classified.positions] = classified.proba
        return proba

    return train_and_predict


@dataclass
class ScoreTable:
    """Scores of a source's images: ids, labels (or None) and easiness, row for row."""

    ids: list[str]
    labels: list[str] | None
    scores: np.ndarray
    scoring: str


def curriculum_scores(source, spec: ScoringSpec, *, split: str | None = None,
                      follow_links: bool = False, allow_outside: bool = False) -> ScoreTable:
    """Score every image of ``source`` (or of its split ``split``) as ``spec`` says.

    Parameters
    ----------
    source : path or ImageSet
        An image source (folder, manifest, list, IDX file; ``[start:stop]`` selectors work).
    spec : ScoringSpec
    split : str, default=None
        Score only the images of this split of the manifest (e.g. ``"train"``: the test images
        then neither train nor tune the scorer).
    follow_links, allow_outside : bool
        How a path ``source`` is opened (:func:`featpipe.data.sources.open_source`).
    """
    images = source if isinstance(source, ImageSet) else open_source(
        source, follow_links=follow_links, allow_outside=allow_outside)
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


CURRICULUM_CONSTRAINTS = {
    "scoring": [ScoringSpec],
    "pacing": [Pacing],
    "ordering": [Options(ORDERINGS)],
    "balanced": ["boolean"],
    "self_taught_epochs": [Interval(int, 1, None)],
}


@dataclass(frozen=True)
class CurriculumSpec:
    """A curriculum for fine-tuning: how to score the training images, and how to pace them.

    Parameters
    ----------
    scoring : ScoringSpec
        The scorer (``transfer``, ``self-taught``, ``random``, ``column:NAME``) and its options.
    pacing : Pacing
        Iteration (optimizer step) -> how many of the ordered training images are in use.
    ordering : {"curriculum", "anti", "random"}, default="curriculum"
    balanced : bool, default=True
        Class-balanced prefixes.
    self_taught_epochs : int, default=2
        Self-taught scoring: epochs of its brief fine-tuning runs (the run's own settings
        otherwise).
    """

    scoring: ScoringSpec
    pacing: Pacing
    ordering: str = "curriculum"
    balanced: bool = True
    self_taught_epochs: int = SELF_TAUGHT_EPOCHS

    def __post_init__(self):
        validate(self.__dict__, CURRICULUM_CONSTRAINTS)

    def describe(self) -> dict:
        """JSON values recorded in the run's summary."""
        return {"scoring": self.scoring.scoring, "pacing": self.pacing.name,
                **self.pacing.params, "ordering": self.ordering, "balanced": self.balanced,
                "scoring_seed": self.scoring.seed}


def _digest(scores) -> str:
    """A short fingerprint of the scores (a resumed run must train on the same order)."""
    return hashlib.sha256(np.ascontiguousarray(scores, dtype=np.float64).tobytes()).hexdigest()[:16]


def finetune_with_curriculum(source, out, spec: FinetuneSpec, curriculum: CurriculumSpec, *,
                             device: str = "auto", workers: int | None = None,
                             follow_links: bool = False, allow_outside: bool = False,
                             **options):
    """:func:`featpipe.finetuning.run.finetune` through a curriculum.

    The training images (the run's own split: validation and ``test`` rows are never scored
    nor used to score) are scored as ``curriculum.scoring`` says, ordered and paced by a
    :class:`~featpipe.curriculum.sampler.CurriculumPlan`; each epoch's metrics row carries the
    pacing (``pacing_fraction_first``, ``pacing_fraction``, ``prefix_size``). The scores are
    written to ``RUN_DIR/curriculum_scores.csv`` and the curriculum to the summary. A killed
    run re-scores on resume and continues only if the curriculum and its scores are the same
    (otherwise one line: the RUN_DIR belongs to a run with other settings).

    Parameters
    ----------
    source, out, spec, device, workers, follow_links, allow_outside, **options
        As for :func:`~featpipe.finetuning.run.finetune`.
    curriculum : CurriculumSpec

    Returns
    -------
    FinetuneOutcome
    """
    from featpipe.finetuning.data import split_train_val
    from featpipe.finetuning.outputs import SUMMARY, write_summary
    from featpipe.finetuning.run import finetune

    validate({"curriculum": curriculum}, {"curriculum": [CurriculumSpec]})
    images = source if isinstance(source, ImageSet) else open_source(
        source, follow_links=follow_links, allow_outside=allow_outside)
    train_set, _ = split_train_val(images, spec.val_split, spec.seed)
    trainer = self_taught_spec(spec, curriculum.self_taught_epochs)
    scores = make_scorer(curriculum.scoring, trainer=trainer, workers=workers).score(
        train_set, seed=curriculum.scoring.seed)
    plan = CurriculumPlan(np.asarray(scores), curriculum.pacing, spec.batch_size,
                          ordering=curriculum.ordering, balanced=curriculum.balanced)
    outcome = finetune(images, out, spec, train_sampler=plan,
                       sampler_settings={**curriculum.describe(), "scores": _digest(scores)},
                       device=device, workers=workers, **options)
    write_scores(outcome.run_dir / SCORES_FILE,
                 ScoreTable(list(train_set.ids), train_set.labels, scores,
                            curriculum.scoring.scoring))
    outcome.summary["curriculum"] = curriculum.describe()
    write_summary(outcome.run_dir / SUMMARY, outcome.summary)
    return outcome
