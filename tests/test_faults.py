"""The fault-injection suite (issue 14): nothing lost, nothing silently wrong, nothing let in.

Each test injects one fault and checks what the user sees (one line naming the file and the
cause, the right exit code) and what is kept (a finished part that reads and resumes to the
result of an uninterrupted run). RELIABILITY.md reports the faults and how often they ran.
``FEATPIPE_FAULT_RUNS=N`` sets the number of random kill points per command (default 1).
"""

import json
import os
import resource
import signal
import subprocess
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from featpipe.classical.persist import load_model
from featpipe.classical.transformers.layers import LayerL2Normalizer
from featpipe.classical.transformers.scaling import Standardizer
from featpipe.cli import main
from featpipe.data.sources import from_file_list, from_folder, from_manifest
from featpipe.errors import FeatpipeError, FeatpipeWarning
from featpipe.extract import extract
from featpipe.fileio import atomic_write, private_folder
from featpipe.models.capture import FeatureCapture
from featpipe.store import writer as store_writer
from featpipe.store.check import check_store
from featpipe.store.reader import FeatureStore

from conftest import write_shapes
from faults import (
    FAULT_RUNS,
    assert_same_store,
    featpipe_cmd,
    kill_and_resume,
    timed_run,
)

SMALL = dict(layers="stages", image_size=32, batch_size=2, progress=False)
FIT_OPTIONS = ("--recipe", "l2", "--classifier", "liblinear", "--cv", 2, "--grid", "clf__C=1")


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    """3 classes x 8 small images and one broken file (a failure row)."""
    root = write_shapes(tmp_path_factory.mktemp("faults") / "imgs", per_class=8, size=40)
    (root / "circle" / "broken.png").write_bytes(b"\x89PNG junk")
    return root


@pytest.fixture(scope="module")
def clean_store(images, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("clean") / "clean.h5"
    extract(images, out, **SMALL)
    return out


def extract_cmd(source, out):
    return featpipe_cmd("extract", source, "--out", out, "--layers", "stages", "--image-size",
                        32, "--batch-size", 2, "--workers", 0, "--quiet")


# --------------------------------------------------------------------------- kill -9


@pytest.fixture(scope="module")
def extract_reference(images, tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "ref.h5"
    reference = timed_run(extract_cmd(images, out), work_starts=Path(f"{out}.partial"))
    return out, reference


@pytest.mark.parametrize("seed", range(FAULT_RUNS))
def test_extract_killed_at_a_random_moment_resumes_to_the_same_store(
        seed, images, extract_reference, tmp_path):
    reference_store, reference = extract_reference
    out = tmp_path / "killed.h5"
    kill_and_resume(extract_cmd(images, out), reference, seed,
                    work_starts=Path(f"{out}.partial"), output=out)
    assert_same_store(out, reference_store)
    assert check_store(out).ok and not Path(f"{out}.partial").exists()


@pytest.fixture(scope="module")
def fit_reference(clean_store, tmp_path_factory):
    out = tmp_path_factory.mktemp("fit") / "ref.skops"
    return out, timed_run(fit_cmd(clean_store, out))


def fit_cmd(store, out):
    return featpipe_cmd("fit", store, *FIT_OPTIONS, "--out", out, "--quiet")


@pytest.mark.parametrize("seed", range(FAULT_RUNS))
def test_fit_killed_at_a_random_moment_leaves_no_half_written_model(
        seed, clean_store, fit_reference, tmp_path):
    reference_model, reference = fit_reference
    out = tmp_path / "model.skops"
    cmd = fit_cmd(clean_store, out)
    report = kill_and_resume(cmd, reference, seed, max_resumes=1)
    X = FeatureStore.open(clean_store).load().X
    model, _, _ = load_model(out)
    expected, _, _ = load_model(reference_model)
    np.testing.assert_array_equal(model.decision_function(X), expected.decision_function(X))
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != out.name]
    assert all(name.endswith(".partial") for name in leftovers), (report, leftovers)


# --------------------------------------------------------------------------- disk full


def test_disk_filling_up_mid_extraction_stops_with_one_line_and_resumes(
        images, clean_store, tmp_path, monkeypatch):
    out = tmp_path / "full.h5"
    calls = []

    def shrinking_disk(folder):
        calls.append(folder)
        return 2**40 if len(calls) <= 6 else 2**20  # create, 2 reopens, 3 batches; then full

    monkeypatch.setattr(store_writer, "free_bytes", shrinking_disk)
    with pytest.raises(FeatpipeError, match=r"not enough disk space for .*full.h5.partial: "
                                            r"about .* MiB needed, 1.0 MiB free"):
        extract(images, out, **SMALL)
    partial = FeatureStore.open(f"{out}.partial", allow_partial=True)
    assert 0 < partial.summary()["n_pending"] < partial.n_inputs  # the finished part reads
    monkeypatch.setattr(store_writer, "free_bytes", lambda folder: 2**40)
    assert extract(images, out, **SMALL).resumed
    assert_same_store(out, clean_store)


def test_disk_full_before_the_start_refuses_before_any_work(images, tmp_path, monkeypatch):
    monkeypatch.setattr(store_writer, "free_bytes", lambda folder: 10)
    with pytest.raises(FeatpipeError, match="not enough disk space"):
        extract(images, tmp_path / "x.h5", **SMALL)
    assert not list(tmp_path.glob("x.h5*"))


def _limit_file_size(n_bytes):
    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (n_bytes, n_bytes))
    return limit


def test_a_failing_hdf5_write_is_one_line_and_no_crash_at_exit(images, clean_store, tmp_path):
    """A real write error inside HDF5 (a file-size limit: EFBIG, no root needed)."""
    out = tmp_path / "limited.h5"
    run = subprocess.run(extract_cmd(images, out), capture_output=True, text=True,
                         preexec_fn=_limit_file_size(60_000))
    assert run.returncode == 1, run.stderr  # not a segmentation fault or a bus error
    line = one_line(run.stderr)
    assert line.startswith(f"featpipe: error: cannot write {out}.partial: File too large")
    extract(images, out, **SMALL)  # the re-run (in-process: quicker, same code)
    assert_same_store(out, clean_store)


@pytest.fixture
def tiny_tmpfs(tmp_path):
    mount = tmp_path / "mnt"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mount)],
                      capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def test_a_really_full_disk(images, tiny_tmpfs, clean_store):
    """A 6 MiB tmpfs, 2.5 MiB taken: refused in one line; once freed, the run completes."""
    out = tiny_tmpfs / "s.h5"
    (tiny_tmpfs / "filler").write_bytes(b"\0" * (5 * 2**19))
    with pytest.raises(FeatpipeError, match=f"not enough disk space for {out}.partial"):
        extract(images, out, **SMALL)
    (tiny_tmpfs / "filler").unlink()
    extract(images, out, **SMALL)
    assert_same_store(out, clean_store)


# --------------------------------------------------------------------------- non-finite


def test_a_backbone_producing_nan_stops_with_a_line_naming_it(images, tmp_path):
    from featpipe.models import create_backbone

    state = create_backbone("torchvision:resnet18", pretrained=False).model.state_dict()
    state["conv1.weight"][0, 0, 0, 0] = float("nan")
    weights = tmp_path / "nan.pth"
    torch.save(state, weights)
    with pytest.raises(FeatpipeError, match=r"backbone torchvision:resnet18 produced non-finite "
                                            r"activations \(NaN/inf\) for all 2 images"):
        extract(images, tmp_path / "nan.h5", model="torchvision:resnet18", weights=str(weights),
                layers="last", image_size=32, batch_size=2, progress=False)


def test_rows_with_nan_activations_are_recorded_as_failed(images, tmp_path, monkeypatch):
    forward = FeatureCapture.forward

    def second_row_nan(self, x):
        features = {name: values.clone() for name, values in forward(self, x).items()}
        if len(x) > 1:
            for values in features.values():
                values[1] = float("nan")
        return features

    monkeypatch.setattr(FeatureCapture, "forward", second_row_nan)
    out = tmp_path / "half.h5"
    result = extract(images, out, **SMALL)
    store = FeatureStore.open(out)
    reasons = [reason for _, reason in store.failures]
    n_nan = sum(r.startswith("non-finite activations (NaN/inf) in layer") for r in reasons)
    assert n_nan == 11 and result.n_failed == 12  # each full batch's 2nd row; broken.png
    assert np.isfinite(store.load().X).all() and check_store(out).ok


@pytest.fixture
def store_with_nan_row(clean_store, tmp_path):
    """An (older) store holding NaN in a row marked extracted."""
    damaged = tmp_path / "nan-row.h5"
    damaged.write_bytes(clean_store.read_bytes())
    with h5py.File(damaged, "r+") as f:
        row = int(np.flatnonzero(f["status"][()] == 1)[3])
        f["features"][next(iter(f["features"]))][row, 0] = np.nan
        bad_id = f["ids"].asstr()[row]
    return damaged, bad_id


def test_fit_predict_evaluate_name_the_file_and_rows_holding_nan(
        capsys, store_with_nan_row, clean_store, tmp_path):
    damaged, bad_id = store_with_nan_row
    model = tmp_path / "m.skops"
    assert run_cli(capsys, "fit", clean_store, *FIT_OPTIONS, "--out", model)[0] == 0
    for argv in (["fit", damaged, *FIT_OPTIONS, "--out", tmp_path / "x.skops"],
                 ["predict", model, damaged], ["evaluate", model, damaged]):
        code, _, err = run_cli(capsys, *argv)
        assert code == 1
        assert (f"{damaged} has 1 extracted row(s) with non-finite features (NaN/inf): "
                f"{bad_id}") in one_line(err)
    code, out, _ = run_cli(capsys, "info", "--check", damaged)
    assert code == 1 and f"1 extracted row(s) hold NaN/inf (first: {bad_id})" in out


def test_huge_finite_features_do_not_overflow_the_normalizations():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(20, 6)).astype(np.float32)
    slices = {"a": (0, 3), "b": (3, 6)}
    l2 = LayerL2Normalizer(slices).fit_transform(X)
    np.testing.assert_allclose(LayerL2Normalizer(slices).fit_transform(X * 1e30), l2, rtol=1e-5)
    np.testing.assert_allclose(LayerL2Normalizer(slices).fit_transform(X * 1e-30), l2, rtol=1e-5)
    standard = Standardizer().fit_transform(X)
    huge = Standardizer().fit_transform(X * np.float32(1e37))
    assert np.isfinite(huge).all()
    np.testing.assert_allclose(huge, standard, rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------- damaged stores


def _damage_provenance(f):
    f.attrs["provenance"] = "{not json"


def _drop_ids(f):
    del f["ids"]


def _status_without_failure(f):
    f["status"][int(np.flatnonzero(f["status"][()] == 2)[0])] = 1


def _change_a_value(f):
    ds, row = f["features"][next(iter(f["features"]))], int(np.argmax(f["status"][()] == 1))
    ds[row, 0] = ds[row, 0] + 1


DAMAGE = {"provenance is not JSON": _damage_provenance, "ids missing": _drop_ids,
          "status says ok, failure table lists it": _status_without_failure,
          "a value changed after extraction": _change_a_value}


@pytest.mark.parametrize("damage", DAMAGE)
def test_info_check_finds_each_damage(damage, clean_store, tmp_path, capsys):
    path = tmp_path / "damaged.h5"
    path.write_bytes(clean_store.read_bytes())
    with h5py.File(path, "r+") as f:
        DAMAGE[damage](f)
    code, out, err = run_cli(capsys, "info", "--check", path)
    assert code == 1 and "problem:" in out and not err, out


def test_info_check_passes_a_sound_store_and_reports_json(clean_store, capsys):
    code, out, _ = run_cli(capsys, "info", "--check", "--json", clean_store)
    assert code == 0 and json.loads(out)["ok"] is True


@pytest.mark.parametrize("how", ["garbage over the metadata", "truncated"])
def test_every_read_path_names_a_damaged_file_in_one_line(how, clean_store, tmp_path, capsys):
    path = tmp_path / "broken.h5"
    data = bytearray(clean_store.read_bytes())
    if how == "truncated":
        data = data[: len(data) // 2]
    else:
        data[2000:6000] = b"\xab" * 4000  # object headers and the ids' heap
    path.write_bytes(bytes(data))
    attempts = [lambda: FeatureStore.open(path).load(),
                lambda: list(FeatureStore.open(path).iter_batches(batch_size=4))]
    for attempt in attempts:
        with pytest.raises(FeatpipeError, match=str(path)):
            attempt()
    for argv in (["info", path], ["info", "--check", path]):
        code, out, err = run_cli(capsys, *argv)
        assert code == 1 and str(path) in (err or out) and "Traceback" not in err + out


# --------------------------------------------------------------------------- hostile trees


def test_symlinks_never_relabel_unless_followed(tmp_path, capsys):
    root = write_shapes(tmp_path / "imgs", per_class=2, size=32)
    os.symlink(root / "circle", root / "square" / "more")  # a folder link up the tree
    os.symlink(root / "circle" / "circle000.png", root / "triangle" / "t.png")
    os.symlink(root / "circle", root / "oval")  # a linked class folder
    with pytest.warns(FeatpipeWarning, match="skipped 3 symbolic link"):
        images = from_folder(root)
    assert images.labels.count("circle") == 2 and len(images) == 6
    assert len(from_folder(root, follow_links=True)) == 6 + 2 + 1 + 2
    code, out, err = run_cli(capsys, "extract", root, "--out", tmp_path / "s.h5", "--layers",
                             "last", "--image-size", 32, "--quiet")
    assert code == 0 and one_line(err).startswith("featpipe: warning: skipped 3 symbolic link")
    assert "--follow-links" in err


def test_a_file_name_that_is_not_utf8_is_recorded(tmp_path):
    root = write_shapes(tmp_path / "imgs", per_class=2, size=32)
    name = os.path.join(os.fsencode(root / "circle"), b"caf\xe9.png")
    try:
        with open(name, "wb") as handle:
            handle.write((root / "circle" / "circle000.png").read_bytes())
    except OSError:
        pytest.skip("this file system refuses names that are not UTF-8")
    out = tmp_path / "s.h5"
    extract(root, out, layers="last", image_size=32, progress=False)
    store = FeatureStore.open(out)
    assert "circle/caf\\xe9.png" in store.ids.tolist() and not store.failures


@pytest.mark.parametrize("kind", ["manifest", "list"])
def test_text_in_another_encoding_is_one_clear_line(kind, tmp_path):
    path = tmp_path / ("m.csv" if kind == "manifest" else "l.txt")
    text = "path,label\nx/caf\xe9.png,cat\n" if kind == "manifest" else "a.png\ncaf\xe9.png\n"
    path.write_bytes(text.encode("latin-1"))
    with pytest.raises(FeatpipeError, match=rf"{path.name}:2: not UTF-8 text \(byte 0xe9\); "
                                            "save the file as UTF-8"):
        (from_manifest if kind == "manifest" else from_file_list)(path)


@pytest.mark.parametrize("row", ["../outside.png", "x/../../outside.png", "/etc/passwd"])
def test_manifest_paths_leaving_its_folder_are_refused_unless_allowed(row, tmp_path, capsys):
    (tmp_path / "data").mkdir()
    manifest = tmp_path / "data" / "m.csv"
    manifest.write_text(f"path,label\nin.png,a\n{row},b\n")
    code, _, err = run_cli(capsys, "extract", manifest, "--out", tmp_path / "s.h5")
    assert code == 1 and "is outside the manifest's folder" in one_line(err)
    assert "--allow-outside" in err and not (tmp_path / "s.h5.partial").exists()
    assert from_manifest(manifest, allow_outside=True).ids[1] == os.path.normpath(row)


# --------------------------------------------------------------------------- nothing runs


def test_no_search_cache_persists_by_default(clean_store, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(capsys, "fit", clean_store, "--recipe", "pca-svm", "--reduce", "pca:4",
                           "--cv", 2, "--grid", "clf__C=1", "--search", "grid",
                           "--out", "m.skops")
    assert code == 0, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.skops"]


@pytest.mark.parametrize("unsafe", ["writable by others", "a symbolic link"])
def test_a_cache_folder_others_can_write_is_refused(unsafe, tmp_path):
    cache = tmp_path / "cache"
    (cache / "joblib").mkdir(parents=True)
    if unsafe == "writable by others":
        os.chmod(cache / "joblib", 0o777)
    else:
        os.symlink(tmp_path, cache / "joblib" / "elsewhere")
    with pytest.raises(FeatpipeError, match=f"cache folder {cache} is not private: .* {unsafe}"):
        private_folder(cache)


# --------------------------------------------------------------------------- arguments, files


def test_absurd_image_size_is_refused_before_any_allocation(images, tmp_path, capsys):
    code, _, err = run_cli(capsys, "extract", images, "--out", tmp_path / "s.h5",
                           "--image-size", 200_000)
    assert code == 2 and "--image-size 200000 with --batch-size 25 needs about" in one_line(err)
    assert not list(tmp_path.iterdir())


def test_predict_out_an_existing_folder_fails_before_the_work(clean_store, images, tmp_path,
                                                              capsys):
    model = tmp_path / "m.skops"
    run_cli(capsys, "fit", clean_store, *FIT_OPTIONS, "--out", model)
    (tmp_path / "folder").mkdir()
    code, _, err = run_cli(capsys, "predict", model, images, "--out", tmp_path / "folder")
    assert code == 1 and "is a directory" in one_line(err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder", "m.skops"]


def test_info_into_a_closed_pipe_is_quiet(clean_store):
    proc = subprocess.Popen(featpipe_cmd("info", "--json", clean_store), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader is gone before featpipe writes: `featpipe info | head -0`
    err = proc.stderr.read().decode()
    assert proc.wait() == 141 and err == "", err


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600)])
def test_written_files_get_0644_less_the_umask(umask, mode, tmp_path):
    old = os.umask(umask)
    try:
        path = atomic_write(tmp_path / "model.skops", b"x")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == mode
