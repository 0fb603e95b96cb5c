"""Compare two `faceagent detect --json` outputs of the same images: same verdicts, same faces, boxes and
landmarks within a pixel, scores within 0.01.

    python tools/pi/compare_detect.py REFERENCE.jsonl CANDIDATE.jsonl

Used by `make test-arm64` with the x86-64 output as the reference and the arm64 (qemu) output as the candidate.
Exit 0 when every image agrees, 1 with one line per difference otherwise.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

PIXEL_TOLERANCE = 1
SCORE_TOLERANCE = 0.01


def read_lines(path: Path) -> dict[str, dict[str, Any]]:
    """The detect output keyed by image name (one JSON object per line)."""
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {line["image"]: line for line in lines}


def points_apart(a: list[int] | list[list[int]], b: list[int] | list[list[int]]) -> int:
    """The largest coordinate difference between two boxes [x, y, w, h] or two landmark lists [[x, y], ...]."""
    flat_a = [v for p in a for v in (p if isinstance(p, list) else [p])]
    flat_b = [v for p in b for v in (p if isinstance(p, list) else [p])]
    if len(flat_a) != len(flat_b):
        return sys.maxsize
    return max((abs(x - y) for x, y in zip(flat_a, flat_b)), default=0)


def differences(reference: dict[str, dict[str, Any]], candidate: dict[str, dict[str, Any]]) -> list[str]:
    """One sentence per disagreement between the two outputs; empty when they agree."""
    found = []
    for image in sorted(set(reference) | set(candidate)):
        ref, cand = reference.get(image), candidate.get(image)
        if ref is None or cand is None:
            found.append(f"{image}: only in the {'candidate' if ref is None else 'reference'} output")
            continue
        for key in ("width", "height", "verdict", "best"):
            if ref[key] != cand[key]:
                found.append(f"{image}: {key} {cand[key]!r}, reference {ref[key]!r}")
        if len(ref["faces"]) != len(cand["faces"]):
            found.append(f"{image}: {len(cand['faces'])} face(s), reference {len(ref['faces'])}")
            continue
        for n, (rf, cf) in enumerate(zip(ref["faces"], cand["faces"])):
            for key in ("box", "landmarks"):
                apart = points_apart(rf[key], cf[key])
                if apart > PIXEL_TOLERANCE:
                    found.append(f"{image}: face {n} {key} {cf[key]}, reference {rf[key]} ({apart} px apart)")
            if abs(rf["score"] - cf["score"]) > SCORE_TOLERANCE:
                found.append(f"{image}: face {n} score {cf['score']}, reference {rf['score']}")
            if rf["usable"] != cf["usable"]:
                found.append(f"{image}: face {n} usable {cf['usable']}, reference {rf['usable']} ({cf['reasons']})")
    return found


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    reference, candidate = read_lines(Path(argv[0])), read_lines(Path(argv[1]))
    found = differences(reference, candidate)
    for line in found:
        print(f"compare_detect: {line}", file=sys.stderr)
    if not found:
        for image, output in sorted(candidate.items()):
            boxes = " ".join(str(face["box"]) for face in output["faces"]) or "-"
            print(f"    {image}: {output['verdict']}, {len(output['faces'])} face(s) {boxes}: same as the reference")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
