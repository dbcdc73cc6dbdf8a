"""`make demo`'s job on a small slice of the bundled data."""

import csv
import shutil

from featpipe import demo

from conftest import CLIPART


def test_demo_runs_end_to_end_on_bundled_images(tmp_path):
    rows = list(csv.DictReader((CLIPART / "manifest.csv").open()))
    picked = [r for r in rows if r["label"] in ("birds", "fruit", "clothing")]
    picked = [r for k, r in enumerate(picked) if k % 3 == 0]
    data = tmp_path / "data"
    for row in picked:
        (data / row["path"]).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(CLIPART / row["path"], data / row["path"])
    with (data / "manifest.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["path", "label", "split"])
        writer.writeheader()
        writer.writerows(picked)
    out = tmp_path / "out"
    table = demo.run(data / "manifest.csv", out, image_size=64, cv=2)
    assert table.count("\n") >= 5 and "full network: FNE" in table
    assert (out / "comparison.png").stat().st_size > 1000
    assert (out / "full-network-fne.skops").exists()
    assert (out / "last-layer-linear-probe" / "report.json").exists()
