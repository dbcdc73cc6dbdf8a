"""Curriculum learning: pacing schedules, class-balanced orderings, the sampler, and scorers that
never let an image's own label into its score."""

import numpy as np
import pytest
from sklearn.model_selection import KFold
from torch.utils.data import DataLoader, TensorDataset

import torch

from featpipe.cli import main
from featpipe.curriculum.ordering import balance_classes, order_examples
from featpipe.curriculum.pacing import PACING_FUNCTIONS, Pacing
from featpipe.curriculum.sampler import CurriculumPlan, CurriculumSampler
from featpipe.curriculum.scoring import ColumnScorer, create_scorer
from featpipe.curriculum.transfer import TransferScorer, features_for
from featpipe.data import from_folder, open_source
from featpipe.errors import FeatpipeError
from featpipe.store.reader import FeatureSet

RAMPING = {
    "linear": dict(start=0.2, ramp=4),
    "log": dict(start=0.2, ramp=4),
    "ladder": dict(start=0.2, step_length=2, rungs=2),
    "exponential": dict(start=0.2, inc=2.0, step_length=2),
}


# --------------------------------------------------------------------------- pacing


@pytest.mark.parametrize("name, params, expected", [
    ("constant", {}, [10, 10, 10, 10, 10, 10, 10]),
    ("linear", RAMPING["linear"], [2, 4, 6, 8, 10, 10, 10]),
    ("log", RAMPING["log"], [2, 9, 10, 10, 10, 10, 10]),
    ("ladder", RAMPING["ladder"], [2, 2, 6, 6, 10, 10, 10]),
    ("exponential", RAMPING["exponential"], [2, 2, 4, 4, 8, 8, 10]),
    ("exponential", dict(start=0.1, inc=1.9, step_length=1), [5, 10, 19, 35, 50, 50, 50]),
])
def test_each_pacing_function_gives_its_exact_schedule(name, params, expected):
    n = 50 if params.get("inc") == 1.9 else 10
    assert [Pacing(name, **params)(t, n) for t in range(7)] == expected


@pytest.mark.parametrize("name", list(RAMPING))
def test_a_start_of_one_is_constant_pacing(name):
    pacing = Pacing(name, **{**RAMPING[name], "start": 1.0})
    assert [pacing(t, 37) for t in range(20)] == [37] * 20


@pytest.mark.parametrize("name", list(RAMPING))
def test_the_last_step_covers_the_whole_set_and_stays_there(name):
    pacing = Pacing(name, **RAMPING[name])
    sizes = [pacing(t, 101) for t in range(10_000)]
    full = sizes.index(101)
    assert 0 < full and sizes[full - 1] < 101 and set(sizes[full:]) == {101}
    assert sizes == sorted(sizes)  # never shrinks
    assert pacing(10**9, 101) == 101  # no overflow far out


@pytest.mark.parametrize("name, params, fragment", [
    ("linear", dict(start=0.0, ramp=4), "`start` must be a float in (0, 1]"),
    ("exponential", dict(start=0.2, inc=1.0, step_length=5), "`inc` must be a float > 1"),
    ("ladder", dict(start=0.2, step_length=0, rungs=2), "`step_length` must be an int >= 1"),
    ("linear", dict(start=0.2), "linear pacing needs `ramp`"),
    ("constant", dict(start=0.2), "`start` does not apply to constant pacing"),
    ("cosine", {}, "`pacing` must be one of constant, linear, log, ladder, exponential"),
])
def test_bad_pacing_parameters_are_one_line_errors(name, params, fragment):
    with pytest.raises(FeatpipeError, match=None) as excinfo:
        Pacing(name, **params)
    assert fragment in str(excinfo.value) and "\n" not in str(excinfo.value)


def test_every_pacing_function_is_documented_in_the_module_table():
    import featpipe.curriculum.pacing as pacing

    assert all(f"\n{name} " in pacing.__doc__ for name in PACING_FUNCTIONS)


# --------------------------------------------------------------------------- ordering


def _prefix_deviation(order, labels):
    sizes = np.bincount(labels)
    counts, worst = np.zeros(len(sizes)), 0.0
    for k, position in enumerate(order, 1):
        counts[labels[position]] += 1
        worst = max(worst, float(np.abs(counts - k * sizes / len(order)).max()))
    return worst


def test_every_prefix_keeps_each_class_share_within_one_example():
    for seed in range(60):
        rng = np.random.default_rng(seed)
        n_classes = int(rng.integers(2, 7))
        labels = rng.choice(n_classes, size=int(rng.integers(6, 120)),
                            p=rng.dirichlet(np.full(n_classes, 0.6)))
        labels = np.unique(labels, return_inverse=True)[1]
        order = rng.permutation(len(labels))
        balanced = balance_classes(order, labels)
        assert sorted(balanced.tolist()) == list(range(len(labels)))
        assert _prefix_deviation(balanced, labels) < 1
        for c in np.unique(labels):  # within a class the curriculum order is kept
            assert balanced[labels[balanced] == c].tolist() == order[labels[order] == c].tolist()


def test_curriculum_anti_and_random_orderings():
    scores = np.array([0.5, 0.9, 0.1, 0.7, 0.3, 0.5])
    easy_first = order_examples(scores, balanced=False)
    assert scores[easy_first].tolist() == sorted(scores, reverse=True)
    assert scores[order_examples(scores, balanced=False, ordering="anti")].tolist() == \
        sorted(scores)
    shuffled = order_examples(scores, balanced=False, ordering="random", seed=3)
    assert sorted(shuffled.tolist()) == list(range(6))
    assert shuffled.tolist() == order_examples(-scores, balanced=False, ordering="random",
                                               seed=3).tolist()  # scores play no part
    ties = [order_examples(np.zeros(40), balanced=False, seed=s)[:5].tolist() for s in (0, 1)]
    assert ties[0] != ties[1] and ties[0] != [0, 1, 2, 3, 4]  # ties never follow input order
    with pytest.raises(FeatpipeError, match="finite"):
        order_examples(np.array([0.1, np.nan]), balanced=False)


# --------------------------------------------------------------------------- sampler


def _epochs(sampler, n_epochs):
    for epoch in range(n_epochs):
        sampler.set_epoch(epoch)
        yield epoch, list(sampler)


def test_sampler_yields_only_the_current_prefix_and_eventually_everything():
    rng = np.random.default_rng(0)
    order = rng.permutation(23)
    sampler = CurriculumSampler(order, Pacing("exponential", start=0.1, inc=2.0, step_length=3),
                                batch_size=4, seed=5)
    assert len(sampler) == 23 and sampler.steps_per_epoch == 6
    seen = set()
    for epoch, indices in _epochs(sampler, 3):
        assert len(indices) == 23
        for step in range(sampler.steps_per_epoch):
            batch = indices[step * 4:(step + 1) * 4]
            allowed = set(order[:sampler.prefix_size(epoch * 6 + step)].tolist())
            assert set(batch) <= allowed
        seen.update(indices)
    assert seen == set(range(23))
    sampler.set_epoch(3)  # once the prefix is everything, an epoch is a permutation
    assert sorted(sampler) == list(range(23))


def test_sampler_walks_its_prefix_before_repeating_and_is_reproducible_per_epoch():
    sampler = CurriculumSampler(np.arange(12), Pacing("ladder", start=0.5, step_length=100,
                                                      rungs=1), batch_size=3, seed=1)
    sampler.set_epoch(0)
    first = list(sampler)
    assert sorted(first[:6]) == list(range(6)) and sorted(first[6:]) == list(range(6))
    sampler.set_epoch(1)
    other = list(sampler)
    sampler.set_epoch(0)
    assert list(sampler) == first and other != first


def test_sampler_logs_its_pacing_and_drives_a_dataloader():
    plan = CurriculumPlan(np.linspace(1, 0, 10), Pacing("linear", start=0.2, ramp=8),
                          batch_size=4, num_samples=8)
    labels = np.array([0, 1] * 5)
    sampler = plan(labels, seed=0)  # epochs counted from 1, as the fine-tuning loop does
    loader = DataLoader(TensorDataset(torch.arange(10)), batch_size=4, sampler=sampler)
    sampler.set_epoch(1)
    batches = [b[0].tolist() for b in loader]
    assert [len(b) for b in batches] == [4, 4]
    assert set(batches[0]) <= set(sampler.order[:2].tolist())
    assert sampler.log_state() == {"pacing_fraction_first": 0.2, "pacing_fraction": 0.3,
                                   "prefix_size": 3}
    sampler.set_epoch(5)
    assert sampler.log_state() == {"pacing_fraction_first": 1.0, "pacing_fraction": 1.0,
                                   "prefix_size": 10}
    with pytest.raises(FeatpipeError, match="training split has 3"):
        plan(np.array([0, 1, 0]), seed=0)


# --------------------------------------------------------------------------- scoring


def _features(X, y):
    return FeatureSet(X=np.asarray(X, dtype=np.float32), y=np.asarray(y), layer_slices={
        "a": (0, X.shape[1])}, class_names=["a", "b"], ids=np.array([f"i{k}" for k in
                                                                     range(len(y))]),
        index=np.arange(len(y)), splits=None, provenance={})


def _nearest_neighbour(cv):
    return TransferScorer(recipe=None, normalize="none", classifier="knn",
                          grid={"clf__n_neighbors": [1]}, cv=cv)


def test_transfer_scores_never_use_an_images_own_label():
    """A 1-nearest-neighbour classifier memorises: scored on its own training images it gives
    every true class probability 1. Out of fold, on labels unrelated to the features, it is at
    chance; flipping one image's label flips its score, as it must if the label is unseen."""
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(60, 4)), rng.integers(0, 2, size=60)
    pipeline, grid = _nearest_neighbour(4).pipeline_for(_features(X, y))
    pipeline.set_params(**{name: values[0] for name, values in grid.items()})
    in_sample = pipeline.fit(X, y).predict_proba(X)[np.arange(60), y]
    assert in_sample.tolist() == [1.0] * 60
    splitter = KFold(4, shuffle=True, random_state=0)  # folds that do not depend on labels
    scores = _nearest_neighbour(splitter).score_features(_features(X, y))
    assert 0.3 < scores.mean() < 0.7
    flipped = y.copy()
    flipped[[3, 17, 42]] = 1 - flipped[[3, 17, 42]]
    rescored = _nearest_neighbour(splitter).score_features(_features(X, flipped))
    assert rescored[[3, 17, 42]].tolist() == (1 - scores[[3, 17, 42]]).tolist()


def test_transfer_scores_from_a_store_of_the_same_images(lite0_store, shapes_folder):
    images = from_folder(shapes_folder)
    scorer = TransferScorer(store=lite0_store, layers="last", cv=3)
    scores = scorer.score(images)
    assert scores.shape == (30,) and np.all((scores >= 0) & (scores <= 1))
    features = features_for(images, lite0_store, "last")
    features.y = np.random.default_rng(0).permutation(features.y)
    assert scores.mean() > scorer.score_features(features).mean() + 0.05  # labels that fit
    subset = images.subset(np.arange(0, 30, 2))
    assert scorer.score(subset).shape == (15,)  # a subset's rows found by id
    relabelled = images.subset(np.arange(30))
    relabelled.labels = relabelled.labels[1:] + relabelled.labels[:1]
    with pytest.raises(FeatpipeError, match="labels 'circle/circle009.png' 'circle', the source 'square'"):
        features_for(relabelled, lite0_store)
    relabelled.ids = ["elsewhere.png"] + relabelled.ids[1:]
    with pytest.raises(FeatpipeError, match="1 of the 30 images have no features"):
        features_for(relabelled, lite0_store)


@pytest.fixture
def scored_manifest(tmp_path, shapes_folder):
    def write(values):  # beside the images: a manifest may not read outside its folder
        rows = ["path,label,easiness"] + [
            f"{shape}/{shape}{i:03d}.png,{shape},{values(i)}"
            for shape in ("circle", "square") for i in range(3)]
        path = shapes_folder / f"scored-{tmp_path.name}.csv"
        path.write_text("\n".join(rows) + "\n")
        return path
    return write


def test_a_user_score_column_is_read_from_the_manifest(scored_manifest):
    images = open_source(scored_manifest(lambda i: i / 2))
    assert images.columns["easiness"][:2] == ["0.0", "0.5"]
    assert create_scorer("column:easiness").score(images).tolist() == [0, .5, 1, 0, .5, 1]
    assert images.subset([2, 0]).columns == {"easiness": ["1.0", "0.0"]}


@pytest.mark.parametrize("value, fragment", [
    ("", "manifest column 'easiness' is empty for '"),
    ("hard", "manifest column 'easiness' holds 'hard' for '"),
    ("nan", "manifest column 'easiness' holds 'nan' for '"),
])
def test_missing_or_non_numeric_scores_are_one_clear_error(scored_manifest, value, fragment,
                                                           capsys):
    path = scored_manifest(lambda i: value if i == 1 else "0.5")
    with pytest.raises(FeatpipeError) as excinfo:
        ColumnScorer("easiness").score(open_source(path))
    assert fragment in str(excinfo.value) and "circle001.png" in str(excinfo.value)
    assert main(["curriculum-scores", str(path), "--scoring", "column:easiness", "--out",
                 str(path.with_name("out.csv"))]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("featpipe: error: manifest column")
    with pytest.raises(FeatpipeError, match="no manifest column 'difficulty'"):
        create_scorer("column:difficulty").score(open_source(path))


def test_curriculum_scores_command_writes_ranked_csv(scored_manifest, tmp_path, capsys):
    path = scored_manifest(lambda i: i)
    out = tmp_path / "scores.csv"
    assert main(["curriculum-scores", str(path), "--scoring", "column:easiness",
                 "--out", str(out)]) == 0
    lines = out.read_text().splitlines()
    assert lines[0] == "id,label,score,rank" and lines[3].endswith(",circle,2,1")
    assert main(["curriculum-scores", str(path), "--scoring", "random", "--out", str(out),
                 "--seed", "2"]) == 0
    assert len(out.read_text().splitlines()) == 7
    assert main(["curriculum-scores", str(path), "--scoring", "confidence",
                 "--out", str(out)]) == 1
    assert "unknown curriculum scoring 'confidence'" in capsys.readouterr().err


# --------------------------------------------------------------------------- fine-tuning


TINY_RUN = ["--image-size", "32", "--freeze", "all", "--epochs", "3", "--batch-size", "8",
            "--val-split", "0.2", "--augment", "none", "--workers", "0", "--device", "cpu",
            "--quiet"]


def test_a_tiny_curriculum_fine_tune_runs_and_logs_its_schedule(shapes_folder, lite0_store,
                                                                 tmp_path, capsys):
    import csv
    import json

    out = tmp_path / "run"
    assert main(["finetune", str(shapes_folder), "--out", str(out), *TINY_RUN,
                 "--curriculum", "transfer", "--curriculum-store", str(lite0_store),
                 "--curriculum-layers", "last", "--curriculum-cv", "2",
                 "--pacing", "exponential", "--start", "0.25", "--inc", "2",
                 "--step-length", "2"]) == 0, capsys.readouterr().err
    with open(out / "metrics.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["epoch"] != "0"]
    # 24 training images, 3 steps per epoch; steps 0-1 use 25 %, step 2-3 50 %, then all
    assert [float(r["pacing_fraction_first"]) for r in rows] == [0.25, 0.5, 1.0]
    assert [float(r["pacing_fraction"]) for r in rows] == [0.5, 1.0, 1.0]
    assert [int(r["prefix_size"]) for r in rows] == [12, 24, 24]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["curriculum"] == {"scoring": "transfer", "pacing": "exponential",
                                     "start": 0.25, "inc": 2.0, "step_length": 2,
                                     "ordering": "curriculum", "balanced": True,
                                     "scoring_seed": 0}
    assert len((out / "curriculum_scores.csv").read_text().splitlines()) == 25
    assert (out / "curves.png").stat().st_size > 0


def test_a_killed_curriculum_run_resumes_only_with_the_same_curriculum(shapes_folder, tmp_path,
                                                                       capsys, monkeypatch):
    import featpipe.finetuning.run as run

    out = tmp_path / "run"
    curriculum = ["--curriculum", "random", "--pacing", "exponential", "--start", "0.25",
                  "--inc", "2", "--step-length", "2"]

    def killed(*args, **kwargs):
        raise SystemExit(137)  # after the last checkpoint, before the summary

    with monkeypatch.context() as patch:
        patch.setattr(run, "_finish", killed)
        with pytest.raises(SystemExit):
            main(["finetune", str(shapes_folder), "--out", str(out), *TINY_RUN, *curriculum])
    assert (out / "checkpoint.pt").exists() and not (out / "summary.json").exists()
    capsys.readouterr()
    other = [*curriculum[:-1], "3"]
    assert main(["finetune", str(shapes_folder), "--out", str(out), *TINY_RUN, *other]) == 1
    assert "belongs to a run with other settings (sampler)" in capsys.readouterr().err
    assert main(["finetune", str(shapes_folder), "--out", str(out), *TINY_RUN,
                 *curriculum]) == 0, capsys.readouterr().err
    assert (out / "summary.json").exists()


def test_commands_that_read_images_take_the_source_options(shapes_folder, tmp_path, capsys):
    manifest = tmp_path / "outside.csv"  # its rows point outside its own folder
    manifest.write_text("path,label\n" + "".join(
        f"{path},{path.parent.name}\n" for path in sorted(shapes_folder.glob("*/*.png"))))
    run = tmp_path / "run"
    commands = [
        ["curriculum-scores", str(manifest), "--scoring", "random", "--out",
         str(tmp_path / "scores.csv")],
        ["finetune", str(manifest), "--out", str(run), *TINY_RUN, "--curriculum", "random",
         "--pacing", "exponential", "--start", "0.5", "--inc", "2", "--step-length", "2"],
        ["evaluate", str(run), str(manifest)],
    ]
    for command in commands:
        assert main(command) != 0
        assert "--allow-outside" in capsys.readouterr().err, command
        assert main([*command, "--allow-outside"]) == 0, capsys.readouterr().err


def test_curriculum_options_are_checked_before_training(shapes_folder, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["finetune", str(shapes_folder), "--out", str(out), *TINY_RUN,
                 "--curriculum", "random", "--pacing", "linear"]) == 1
    assert capsys.readouterr().err.strip() == ("featpipe: error: linear pacing needs --ramp "
                                               "(it takes start, ramp)")
    assert main(["finetune", str(shapes_folder), "--out", str(out), *TINY_RUN,
                 "--curriculum", "column:easiness"]) == 1
    assert "no manifest column 'easiness'" in capsys.readouterr().err
    assert not out.exists()


def test_self_taught_scores_come_from_short_fine_tuning_runs(shapes_folder):
    from featpipe.finetuning.spec import FinetuneSpec
    from featpipe.workflows.curriculum import ScoringSpec, make_scorer

    trainer = FinetuneSpec(image_size=32, freeze="all", epochs=1, batch_size=8, patience=None,
                           augment="none", val_split=0.2)
    scorer = make_scorer(ScoringSpec(scoring="self-taught", cv=2, device="cpu"),
                         trainer=trainer, workers=0)
    scores = scorer.score(from_folder(shapes_folder), seed=0)
    assert scores.shape == (30,) and np.all((scores > 0) & (scores < 1))
