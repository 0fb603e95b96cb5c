"""Fail unless numpy and OpenCV in this interpreter are Debian's apt packages, at the versions apt installed.

Run with a venv's python made with `--system-site-packages` over python3-numpy and python3-opencv (as the
README's Raspberry Pi section makes it): anything pip put in the venv that shadows them (numpy 2 pulled by a
dependency, an opencv-python wheel) is reported with its location.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
from importlib import metadata

APT_SITE = "/usr/lib/python3/dist-packages/"
# Distributions that would shadow apt's modules of the same import name.
SHADOWS = {"numpy", "opencv-python", "opencv-python-headless", "opencv-contrib-python", "opencv-contrib-python-headless"}


def apt_upstream_version(package: str) -> str:
    """The upstream part of an installed Debian package's version: '1:1.24.2-1+deb12u1' -> '1.24.2'."""
    out = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", package], capture_output=True, text=True, check=True)
    version = out.stdout.strip()
    return version.split(":", 1)[-1].rsplit("-", 1)[0].split("+", 1)[0]


def problems() -> list[str]:
    """Every way this interpreter's numpy or cv2 is not apt's; empty when both are."""
    found = []
    for name, package in (("numpy", "python3-numpy"), ("cv2", "python3-opencv")):
        expected = apt_upstream_version(package)
        try:
            module = importlib.import_module(name)
        except ImportError as exc:  # e.g. apt's cv2 (built on numpy 1.x) under a pip-installed numpy 2
            found.append(f"{name} does not import ({exc}); apt's {package} is {expected}")
            continue
        location = str(getattr(module, "__file__", ""))
        if not location.startswith(APT_SITE):
            found.append(f"{name} is imported from {location}, not from apt's {package} in {APT_SITE}")
        if module.__version__ != expected:
            found.append(f"{name} is {module.__version__}, apt's {package} is {expected}")
    for dist in metadata.distributions():
        name = (dist.metadata["Name"] or "").lower()
        where = str(dist.locate_file(""))
        if name in SHADOWS and not where.startswith(APT_SITE.rstrip("/")):
            found.append(f"pip installed {name} {dist.version} into {where}: it shadows apt's package")
    return found


def main() -> int:
    found = problems()
    for line in found:
        print(f"check_apt_stack: {line}", file=sys.stderr)
    if found:
        return 1
    import cv2
    import numpy

    print(f"apt stack: python {sys.version.split()[0]}, numpy {numpy.__version__}, OpenCV {cv2.__version__} ({APT_SITE})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
