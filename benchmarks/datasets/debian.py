"""Debian packages as data sources: installed, or downloaded and unpacked without root."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from featpipe.errors import FeatpipeError

def ensure_debian_package(package: str, path: Path) -> None:
    """Make sure ``path`` (shipped by Debian ``package``) exists, installing it if root."""
    if path.exists():
        return
    if hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get"):
        result = subprocess.run(["apt-get", "install", "-y", package],
                                capture_output=True, text=True)
        if result.returncode == 0 and path.exists():
            return
    raise FeatpipeError(f"{path} not found: install it with `sudo apt-get install -y {package}`")


def extract_debian_pngs(package: str, target: Path) -> Path:
    """Download ``package`` with ``apt-get download`` and unpack its PNGs under ``target``.

    Nothing is installed; an earlier extraction in ``target`` is reused.
    """
    done = target / ".extracted"
    if done.exists():
        return target
    if not (shutil.which("apt-get") and shutil.which("dpkg-deb")):
        raise FeatpipeError(f"apt-get/dpkg-deb not found: install the Debian package "
                            f"`{package}` and pass --from its stamps folder")
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target) as download:
        _run_checked(["apt-get", "download", package], cwd=download,
                     hint=f"could not download {package} (try `apt-get update`)")
        deb = next(Path(download).glob("*.deb"))
        _unpack_pngs(deb, target)
    done.touch()
    return target


def _unpack_pngs(deb: Path, target: Path) -> None:
    tarball = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE)
    untar = subprocess.run(["tar", "-x", "-C", str(target), "--wildcards", "*.png"],
                           stdin=tarball.stdout, capture_output=True)
    tarball.stdout.close()
    if tarball.wait() != 0 or untar.returncode != 0 or next(target.rglob("*.png"), None) is None:
        raise FeatpipeError(f"could not unpack PNGs from {deb.name}")


def _run_checked(command: list[str], cwd: str, hint: str) -> None:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        raise FeatpipeError(hint)


def _debian_version(package: str) -> str:
    try:
        result = subprocess.run(["dpkg-query", "-W", "-f=${Version}", package],
                                capture_output=True, text=True)
    except OSError:
        return "unknown"
    return result.stdout.strip() if result.returncode == 0 and result.stdout else "unknown"
