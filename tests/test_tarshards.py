"""WebDataset-style tar shards: same features as the same images in a folder, label sidecars,
failure rows, resume, compressed or broken shards refused, member names never touch the disk."""

import io
import json
import tarfile

import h5py
import numpy as np
import pytest

from featpipe.data.sources import from_folder, open_source
from featpipe.data.tarshards import expand_braces
from featpipe.errors import FeatpipeError
from featpipe.extract import extract
from featpipe.store.reader import FeatureStore

SETTINGS = dict(model="torchvision:resnet18", pretrained=False, layers="stages", image_size=32,
                batch_size=4, progress=False)


def _add(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    archive.addfile(info, io.BytesIO(data))


def write_shards(folder, image_set, n_shards: int, label_kind: str = "cls") -> str:
    """The images of ``image_set`` in ``n_shards`` tars, labels in sidecars of ``label_kind``."""
    per = -(-len(image_set) // n_shards)
    for k in range(n_shards):
        with tarfile.open(folder / f"shards-{k:03d}.tar", "w") as archive:
            for i in range(k * per, min((k + 1) * per, len(image_set))):
                key = f"sample{i:05d}"
                with open(image_set.items[i], "rb") as f:
                    _add(archive, f"{key}.png", f.read())
                label = image_set.labels[i]
                sidecar = {"cls": str(image_set.class_names.index(label)), "txt": label,
                           "json": json.dumps({"label": label})}[label_kind]
                _add(archive, f"{key}.{label_kind}", sidecar.encode())
    return str(folder / f"shards-{{000..{n_shards - 1:03d}}}.tar")


def test_brace_ranges_expand_with_their_padding():
    assert expand_braces("a-{8..10}.tar") == ["a-8.tar", "a-9.tar", "a-10.tar"]
    assert expand_braces("s{0..1}-{00..01}.tar") == ["s0-00.tar", "s0-01.tar", "s1-00.tar",
                                                      "s1-01.tar"]


def test_tar_shards_give_the_same_features_as_the_folder(tmp_path, shapes_folder):
    images = from_folder(shapes_folder)
    pattern = write_shards(tmp_path, images, n_shards=3, label_kind="txt")
    from_tar = open_source(pattern)
    assert from_tar.kind == "tar" and len(from_tar) == len(images)
    assert from_tar.labels == images.labels
    assert from_tar.ids[0] == "shards-000.tar/sample00000"
    extract(pattern, tmp_path / "tar.h5", **SETTINGS)
    extract(shapes_folder, tmp_path / "folder.h5", **SETTINGS)
    a, b = FeatureStore.open(tmp_path / "tar.h5").load(), FeatureStore.open(
        tmp_path / "folder.h5").load()
    np.testing.assert_array_equal(a.X, b.X)
    assert a.y.tolist() == b.y.tolist() and a.class_names == b.class_names


@pytest.mark.parametrize("kind", ["cls", "json"])
def test_label_sidecars(tmp_path, shapes_folder, kind):
    images = from_folder(shapes_folder).subset(range(0, 30, 10))
    source = open_source(write_shards(tmp_path, images, n_shards=1, label_kind=kind))
    expected = ([str(images.class_names.index(x)) for x in images.labels] if kind == "cls"
                else images.labels)
    assert source.labels == expected


def test_bad_samples_are_failure_rows_and_a_killed_run_resumes(tmp_path, shapes_folder):
    path = tmp_path / "mixed.tar"
    png = (shapes_folder / "circle" / "circle000.png").read_bytes()
    with tarfile.open(path, "w") as archive:
        _add(archive, "a.png", png)
        _add(archive, "a.cls", b"0")
        _add(archive, "b.jpg", b"not a jpeg")
        _add(archive, "b.cls", b"1")
        _add(archive, "c.cls", b"1")  # a label, no image
        _add(archive, "d.png", png[: len(png) // 2])
        _add(archive, "d.cls", b"0")
    extract(path, tmp_path / "m.h5", **SETTINGS)
    store = FeatureStore.open(tmp_path / "m.h5")
    reasons = dict(store.failures)
    assert len(store.ok_rows) == 1 and sorted(reasons) == [1, 2, 3]
    assert "no image member" in reasons[2] and reasons[3] == "truncated image"
    # an unfinished store of the same tar source resumes (rows keyed by input position)
    partial = tmp_path / "again.h5.partial"
    (tmp_path / "m.h5").rename(partial)
    with h5py.File(partial, "r+") as f:
        f.attrs["complete"] = False
        f["status"][0] = 0
    result = extract(path, tmp_path / "again.h5", **SETTINGS)
    assert result.resumed and result.n_computed == 1 and result.n_failed == 3


def test_member_names_never_touch_the_filesystem(tmp_path, shapes_folder):
    (tmp_path / "inside").mkdir()
    path = tmp_path / "inside" / "evil.tar"
    png = (shapes_folder / "circle" / "circle000.png").read_bytes()
    with tarfile.open(path, "w") as archive:
        _add(archive, "../../escaped.png", png)
        _add(archive, "/abs/escaped.png", png)
        link = tarfile.TarInfo("linked.png")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        archive.addfile(link)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    source = open_source(path)
    extract(path, tmp_path / "inside" / "e.h5", **SETTINGS)
    assert source.ids == ["evil.tar/../../escaped", "evil.tar//abs/escaped"]  # ids only
    assert sorted(p.name for p in tmp_path.rglob("*")) == sorted(before + ["e.h5"])


def test_compressed_missing_and_unlabelled_mixes_are_refused(tmp_path, shapes_folder):
    png = (shapes_folder / "circle" / "circle000.png").read_bytes()
    with tarfile.open(tmp_path / "z.tar", "w:gz") as archive:
        _add(archive, "a.png", png)
    with pytest.raises(FeatpipeError, match="not a plain .uncompressed. tar shard"):
        open_source(tmp_path / "z.tar")
    with pytest.raises(FeatpipeError, match=r"tar shard .*s-01.tar does not exist \(and 1 more\)"):
        open_source(str(tmp_path / "s-{01..02}.tar"))
    with tarfile.open(tmp_path / "m.tar", "w") as archive:
        _add(archive, "a.png", png)
        _add(archive, "a.cls", b"0")
        _add(archive, "b.png", png)
    with pytest.raises(FeatpipeError, match="sample m.tar/b has no label"):
        open_source(tmp_path / "m.tar")
