"""Fine-tuning: freezing really freezes, per-stage rates, LP-FT's head, resume after kill -9,
weights usable by extract / predict / evaluate, and one-line refusals that write nothing."""

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from featpipe.cli import main
from featpipe.data.sources import open_source
from featpipe.errors import FeatpipeError
from featpipe.finetuning.data import decode_crops, split_train_val
from featpipe.finetuning.head import classifier_inputs, fit_probe, probe_as_linear
from featpipe.finetuning.loop import train
from featpipe.finetuning.model import build_optimizer, build_tuning_model, sync_optimizer
from featpipe.finetuning.run import finetune
from featpipe.finetuning.spec import FinetuneSpec
from featpipe.models import create_backbone

from conftest import CLIPART, write_shapes

TINY = dict(model="timm:test_efficientnet", pretrained=False, image_size=32, batch_size=8)
TINY_FLAGS = ["--model", "timm:test_efficientnet", "--no-pretrained", "--image-size", "32",
              "--batch-size", "8", "--quiet"]


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    """3 classes x 8 small images."""
    return write_shapes(tmp_path_factory.mktemp("ft-shapes"), per_class=8, size=40)


@pytest.fixture(scope="module")
def split(shapes):
    return split_train_val(open_source(shapes), 0.25, seed=0)


@pytest.fixture(scope="module")
def finished_run(shapes, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "run"
    return finetune(shapes, out, FinetuneSpec(**TINY, epochs=2, val_split=0.25, freeze=3))


def _bn_buffers(model, names):
    return {f"{n}.{b}": t.clone() for n in names for b, t in
            model.get_submodule(n).named_buffers(recurse=False)}


def test_frozen_stages_stay_bit_identical_and_keep_their_batchnorm_statistics(split, tmp_path):
    spec = FinetuneSpec(**TINY, epochs=2, freeze=3, lr=1e-2, augment="none")
    result = train(spec, *split, checkpoint=tmp_path / "last.pt")
    plan = result.tuning.plan
    trained = torch.load(tmp_path / "last.pt", weights_only=True)["model"]  # the last epoch's
    base = create_backbone("timm:test_efficientnet", pretrained=False, image_size=32).model
    before = base.state_dict()
    frozen = [m for stage in plan.stages[:3] for m in stage]
    frozen_keys = [k for k in before if k.rpartition(".")[0] in frozen]
    assert any("running_mean" in k for k in frozen_keys)
    for key in frozen_keys:  # weights, biases, running mean/var, num_batches_tracked
        assert torch.equal(trained[key], before[key]), key
    # BatchNorm in the trained stages learns and updates its statistics
    trained_bn = [f"{m}.running_mean" for m in plan.stages[4] if f"{m}.running_mean" in before]
    assert trained_bn and any(not torch.equal(trained[k], before[k]) for k in trained_bn)
    head = f"{result.tuning.classifier}.weight"
    initial = build_tuning_model(spec, n_classes=3).model.state_dict()[head]
    assert not torch.equal(trained[head], initial)


def test_parameter_groups_carry_the_requested_rates():
    spec = FinetuneSpec(**TINY, freeze=2, lr=1e-3, head_lr=1e-2, layer_decay=0.5,
                        weight_decay=0.1)
    tuning = build_tuning_model(spec, n_classes=3)
    optimizer = build_optimizer(tuning, spec)
    groups = {g["name"]: g for g in optimizer.param_groups}
    n = len(tuning.plan.stages)
    expected = {"head": 1e-2, **{f"stage{k}": 1e-3 * 0.5 ** (n - 1 - k) for k in range(2, n)}}
    for name, rate in expected.items():
        assert groups[name]["initial_lr"] == pytest.approx(rate)
        assert groups[name]["weight_decay"] == 0.1
        assert groups[f"{name}/no_decay"]["weight_decay"] == 0.0
        assert all(p.ndim <= 1 for p in groups[f"{name}/no_decay"]["params"])
    assert not any(name.startswith(("stage0", "stage1")) for name in groups)  # frozen: absent
    in_optimizer = {id(p) for g in optimizer.param_groups for p in g["params"]}
    frozen = [p for m in tuning.initially_frozen
              for p in tuning.model.get_submodule(m).parameters(recurse=False)]
    assert frozen and not any(id(p) in in_optimizer for p in frozen)


def test_gradual_unfreezing_adds_the_top_frozen_stage_every_k_epochs():
    spec = FinetuneSpec(**TINY, freeze="all", unfreeze_every=2)
    tuning = build_tuning_model(spec, n_classes=3)
    optimizer = build_optimizer(tuning, spec)
    assert [g["name"] for g in optimizer.param_groups] == ["head", "head/no_decay"]
    top = len(tuning.plan.stages) - 1
    assert tuning.frozen_at(1, 2) == tuning.initially_frozen
    thawed = tuning.initially_frozen - tuning.frozen_at(2, 2)
    assert thawed == set(tuning.plan.stages[top])
    sync_optimizer(optimizer, tuning, spec, tuning.frozen_at(4, 2))
    assert [g["name"] for g in optimizer.param_groups][2:] == [
        f"stage{top}", f"stage{top}/no_decay", f"stage{top - 1}", f"stage{top - 1}/no_decay"]


def test_a_tiny_run_improves_validation_accuracy_over_the_initial_head(split):
    spec = FinetuneSpec(**TINY, epochs=4, lr=1e-2, augment="none", patience=None)
    result = train(spec, *split)
    initial = result.history[0]["val_accuracy"]
    assert result.best_val_accuracy > initial
    assert result.best_epoch > 0
    assert result.history[result.best_epoch]["val_accuracy"] == result.best_val_accuracy


def test_lpft_head_reproduces_the_probe_before_the_first_step(split):
    train_set, val_set = split
    spec = FinetuneSpec(**TINY, head_init="probe")
    tuning = build_tuning_model(spec, n_classes=3)
    prep = tuning.backbone.preprocessing
    crops = decode_crops(train_set, prep, ["circle", "square", "triangle"])
    normalize = prep.normalize_batch
    X = classifier_inputs(tuning.model, tuning.classifier, crops.images, normalize)
    probe = fit_probe(X, crops.labels.numpy(), ["circle", "square", "triangle"], 0, "test")
    probe_as_linear(probe, tuning.model.get_submodule(tuning.classifier))
    with torch.inference_mode():
        logits = tuning.model.eval()(normalize(crops.images))
    np.testing.assert_array_equal(logits.argmax(1).numpy(), probe.pipeline.predict(X))
    np.testing.assert_allclose(torch.softmax(logits.double(), 1).numpy(),
                               probe.pipeline.predict_proba(X), atol=1e-4)
    # the training loop does the same and says so
    result = train(spec.replace(epochs=1), train_set, val_set)
    assert result.probe["agreement"] == 1.0 and result.probe["source"] == "extracted"


def test_lpft_reuses_a_store_only_when_its_features_match(shapes, split, tmp_path):
    from featpipe.extract import extract

    spec = FinetuneSpec(**TINY, head_init="probe", epochs=1)
    matching, other = tmp_path / "match.h5", tmp_path / "other.h5"
    extract(shapes, matching, model="timm:test_efficientnet", pretrained=False, image_size=32,
            layers="last", progress=False)
    extract(shapes, other, model="timm:test_efficientnet", pretrained=False, image_size=40,
            layers="last", progress=False)
    lines = []
    assert train(spec, *split, features=matching).probe["source"] == str(matching)
    result = train(spec, *split, features=other, log=lines.append)
    assert result.probe["source"] == "extracted" and result.probe["agreement"] == 1.0
    assert any("not using" in line and "preprocessing" in line for line in lines)


def test_validation_split_is_stratified_or_a_named_split_and_test_rows_never_train():
    from featpipe.data.imageset import ImageSet

    labels = ["a"] * 10 + ["b"] * 4 + ["a", "b"]
    splits = ["train"] * 6 + ["val"] * 4 + ["train", "val", "train", "train", "test", "test"]
    images = ImageSet(items=list(range(16)), ids=[f"i{k}" for k in range(16)], labels=labels,
                      splits=splits, root=None, kind="arrays")
    train_set, val_set = split_train_val(images, 0.25, seed=0)
    assert sorted(val_set.labels) == ["a", "a", "b"]  # round(0.25 * n) of 10 and 4, at least 1
    assert "test" not in train_set.splits + val_set.splits
    assert len(train_set) + len(val_set) == 14 and len(val_set) == 3
    assert split_train_val(images, 0.25, seed=0)[1].ids == val_set.ids  # seeded
    train_set, val_set = split_train_val(images, "val", seed=0)
    assert set(val_set.splits) == {"val"} and set(train_set.splits) == {"train"}
    with pytest.raises(FeatpipeError, match="no split named 'valid'"):
        split_train_val(images, "valid", seed=0)


def test_sampler_contract_order_epoch_and_logged_state(split):
    class Every(torch.utils.data.Sampler):
        def __init__(self):
            self.epochs = []

        def set_epoch(self, epoch):
            self.epochs.append(epoch)

        def __len__(self):
            return 7

        def __iter__(self):
            return iter(range(7))

        def log_state(self):
            return {"pace": 0.5 * len(self.epochs)}

    sampler = Every()
    result = train(FinetuneSpec(**TINY, epochs=2, patience=None), *split,
                   train_sampler=lambda labels, seed: sampler)
    assert sampler.epochs == [1, 2]
    assert [row["steps"] for row in result.history[1:]] == [1, 1]  # ceil(7 / 8)
    assert [row["pace"] for row in result.history[1:]] == [0.5, 1.0]


def test_outputs_and_their_weights_through_extract_predict_and_evaluate(finished_run, shapes,
                                                                        tmp_path, capsys):
    run_dir = finished_run.run_dir
    assert sorted(p.name for p in run_dir.iterdir()) == [
        "curves.png", "metrics.csv", "model.safetensors", "summary.json"]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["base"]["model"] == "timm:test_efficientnet"
    assert summary["data"]["fingerprint"] == open_source(shapes).fingerprint()
    assert summary["settings"]["freeze"] == 3 and summary["best_epoch"] >= 0
    assert len((run_dir / "metrics.csv").read_text().splitlines()) == 1 + 3  # header, epochs 0-2
    state = load_file(str(run_dir / "model.safetensors"))
    assert state["classifier.weight"].shape[0] == 3
    # the weights load through extract --weights and give the run model's features
    store = tmp_path / "tuned.h5"
    assert main(["extract", str(shapes), "--out", str(store), "--model", "timm:test_efficientnet",
                 "--weights", str(run_dir / "model.safetensors"), "--image-size", "32",
                 "--layers", "global_pool,classifier", "--quiet"]) == 0
    from featpipe.store.reader import FeatureStore

    stored = FeatureStore.open(store).load(["global_pool", "classifier"])
    tuning = finished_run.result.tuning
    images = decode_crops(open_source(shapes), tuning.backbone.preprocessing, []).images
    normalize = tuning.backbone.preprocessing.normalize_batch
    pooled = classifier_inputs(tuning.model, tuning.classifier, images, normalize)
    with torch.inference_mode():
        logits = tuning.model.eval()(normalize(images)).numpy()
    np.testing.assert_allclose(stored.X, np.hstack([pooled, logits]), rtol=1e-4, atol=1e-5)
    # predict and evaluate take the run directory as the model
    capsys.readouterr()
    assert main(["predict", str(run_dir), str(shapes)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("id,prediction,error,p_circle") and len(lines) == 25
    assert main(["evaluate", str(run_dir), str(shapes), "--json"]) == 0
    evaluation = json.loads(capsys.readouterr().out)
    predicted = [line.split(",")[1] for line in lines[1:]]
    truth = [line.split(",")[0].split("/")[0] for line in lines[1:]]
    assert evaluation["accuracy"] == pytest.approx(np.mean(np.array(predicted) == truth))


def _cli(args, **kwargs):
    return subprocess.run([sys.executable, "-m", "featpipe.cli", "finetune", *args],
                          capture_output=True, text=True, **kwargs)


def test_resume_after_kill_gives_the_weights_of_an_uninterrupted_run(shapes, tmp_path):
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    flags = [*TINY_FLAGS, "--epochs", "4", "--patience", "0", "--freeze", "2"]
    proc = subprocess.Popen([sys.executable, "-m", "featpipe.cli", "finetune", str(shapes),
                             "--out", str(killed), *flags],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 180
    while time.time() < deadline and proc.poll() is None:
        if (killed / "checkpoint.pt").exists():
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (killed / "summary.json").exists()
    resumed = _cli([str(shapes), "--out", str(killed), *flags])
    assert resumed.returncode == 0, resumed.stderr
    assert "(resumed)" in resumed.stdout
    assert _cli([str(shapes), "--out", str(clean), *flags]).returncode == 0
    a, b = load_file(str(killed / "model.safetensors")), load_file(str(clean / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert (killed / "metrics.csv").read_text().splitlines()[-1].split(",")[:5] == \
        (clean / "metrics.csv").read_text().splitlines()[-1].split(",")[:5]


@pytest.fixture
def tiny_class(tmp_path):
    root = write_shapes(tmp_path / "few", per_class=3, size=32)
    for path in list((root / "triangle").iterdir())[1:]:
        path.unlink()
    return root


@pytest.mark.parametrize("case, extra, message", [
    ("unknown layer", ["--freeze-until", "blocks.9"], "unknown layer 'blocks.9'"),
    ("too many stages", ["--freeze", "9"], "--freeze 9 exceeds the 5 stages"),
    ("bad freeze word", ["--freeze", "most"], "--freeze must be one of none, all"),
    ("unlabelled", [], "has no labels"),
    ("small class", [], "class 'triangle' has 1 image(s)"),
])
def test_bad_input_is_one_line_and_writes_nothing(case, extra, message, shapes, tiny_class,
                                                  tmp_path, capsys):
    source = {"unlabelled": None, "small class": tiny_class}.get(case, shapes)
    if source is None:
        source = tmp_path / "list.txt"
        source.write_text("\n".join(str(p) for p in sorted(shapes.rglob("*.png"))[:4]) + "\n")
    out = tmp_path / "run"
    assert main(["finetune", str(source), "--out", str(out), *TINY_FLAGS, *extra]) in (1, 2)
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and message in err, err
    assert not out.exists()


def test_existing_run_dirs_are_refused_unless_resumable_or_overwritten(finished_run, shapes,
                                                                       tmp_path, capsys):
    with pytest.raises(FeatpipeError, match="holds a finished fine-tuning run"):
        finetune(shapes, finished_run.run_dir, FinetuneSpec(**TINY, epochs=1))
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    assert main(["finetune", str(shapes), "--out", str(foreign), *TINY_FLAGS]) == 1
    assert "is not a fine-tuning run; choose a new directory or pass --overwrite" in \
        capsys.readouterr().err
    # an unfinished run (a checkpoint, no summary) is resumed only with the same settings
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    spec = FinetuneSpec(**TINY, epochs=1, val_split=0.25)
    train(spec, *split_train_val(open_source(shapes), 0.25, 0),
          checkpoint=unfinished / "checkpoint.pt", settings={"spec": spec.describe()})
    with pytest.raises(FeatpipeError, match="belongs to a run with other settings"):
        finetune(shapes, unfinished, spec.replace(lr=0.5))
    assert sorted(p.name for p in unfinished.iterdir()) == ["checkpoint.pt"]


@pytest.mark.slow  # the real Lite0 on the bundled drawings: LP-FT end to end (~15 s on 2 cores)
def test_lpft_with_lite0_on_the_bundled_images(tmp_path, capsys):
    out = tmp_path / "lite0"
    assert main(["finetune", str(CLIPART), "--out", str(out), "--image-size", "64",
                 "--freeze", "all", "--head-init", "probe", "--epochs", "1", "--lr", "1e-3",
                 "--val-split", "0.2", "--quiet"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["probe"]["agreement"] == 1.0
    assert summary["base"]["weights"].startswith("embedded:")
    assert summary["best_val_accuracy"] > 0.4  # 6 classes: chance is 0.17 (0.57 seen at 64 px)
    capsys.readouterr()
    assert main(["evaluate", str(out), str(CLIPART), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["accuracy"] > 0.4
