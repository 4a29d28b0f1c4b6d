"""Box lists in answers: parsing with V-Triune's repairs, and coordinate normalisation.

An answer holds a JSON-like list ``[{'bbox_2d': [x1, y1, x2, y2], 'label': 'dog'}, ...]``
between ``<answer>`` tags. Parsing follows V-Triune's reward server
(``reward_server/utils/det_helper.py``, ``extract_bbox``) so that the same responses get the
same boxes; see :func:`parse_boxes`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import numpy as np

from trainer.rewards.tags import answer_content

# A response's answer longer than this is not parsed (a longer one is not a box list a model
# would write; json.loads of it would cost memory for nothing).
MAX_ANSWER_CHARS = 4_000_000
_EXACT = float(2**24)
Row = tuple[float, float, float, float]  # x1, y1, x2, y2


@dataclass(frozen=True)
class Boxes:
    """Valid boxes of one answer, in order: ``xyxy`` (N, 4) float64 and ``labels`` (N,).

    ``integral``: every coordinate is an integer below 2^24 in magnitude, so that box areas and
    intersections are exact in float64 (then every IoU formula gives the same bits).
    ``rows``: the same coordinates as a tuple of Python float 4-tuples when the parser has them
    at hand (see :meth:`coordinate_rows`); not part of equality.
    """

    xyxy: np.ndarray
    labels: tuple[str, ...]
    integral: bool = False
    rows: tuple[Row, ...] | None = field(default=None, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.labels)

    def coordinate_rows(self) -> tuple[Row, ...]:
        """``xyxy`` as Python floats, one 4-tuple per box (no numpy call when the parser kept them)."""
        if self.rows is not None:
            return self.rows
        return tuple((x1, y1, x2, y2) for x1, y1, x2, y2 in self.xyxy.tolist())


def _coords(value: object) -> tuple[Row | None, bool]:
    """(x1, y1, x2, y2) as floats, or ``None`` for an invalid ``bbox_2d``; and whether the box is
    integral (every coordinate an integer below 2^24 in magnitude)."""
    if type(value) is not list or len(value) != 4:
        return None, False
    x1, y1, x2, y2 = value
    if type(x1) is int and type(y1) is int and type(x2) is int and type(y2) is int:
        if not (x1 <= x2 and y1 <= y2):
            return None, False
        if -_EXACT < x1 and -_EXACT < y1 and x2 < _EXACT and y2 < _EXACT:  # x1 ≤ x2, y1 ≤ y2
            return (float(x1), float(y1), float(x2), float(y2)), True
    coords = []
    for coord in value:
        # bool is an int in Python, and V-Triune's check (isinstance(c, (int, float))) accepts it.
        if not isinstance(coord, int | float):
            return None, False
        try:
            number = float(coord)
        except OverflowError:  # an int beyond the float range
            return None, False
        # Deliberate difference: V-Triune keeps ±Infinity (json accepts it); a non-finite box is
        # invalid here, so that every IoU is a number.
        if not math.isfinite(number):
            return None, False
        coords.append(number)
    fx1, fy1, fx2, fy2 = coords
    if not (fx1 <= fx2 and fy1 <= fy2):
        return None, False
    integral = all(-_EXACT < c < _EXACT and c.is_integer() for c in coords)
    return (fx1, fy1, fx2, fy2), integral


def parse_box_list(text: str) -> Boxes | None:
    """Valid boxes of an already extracted, lower-cased answer; ``None`` when there are none.

    Repairs and filters, in V-Triune's order: ``[[`` → ``[`` and ``]]`` → ``]``; a text not
    ending in ``]`` is cut after its last ``},`` and closed with ``}]`` (a truncated list);
    single quotes → double quotes; backslashes dropped; parsed as JSON. Kept, in order: dicts
    with a ``bbox_2d`` of 4 finite numbers with x1 ≤ x2, y1 ≤ y2 and a string ``label``
    (anything else, such as a ``confidence``, is ignored), except a box whose coordinates equal
    those of an earlier kept box.

    >>> parse_box_list("[{'bbox_2d': [1, 2, 3, 4], 'label': 'dog'}, {'bbox_2d': [1, 2, 3], 'label': 'x'}]")
    Boxes(xyxy=array([[1., 2., 3., 4.]]), labels=('dog',), integral=True)
    """
    if not text or len(text) > MAX_ANSWER_CHARS or not text.strip():
        return None
    if "[[" in text:
        text = text.replace("[[", "[")
    if "]]" in text:
        text = text.replace("]]", "]")
    if not text.endswith("]"):
        text = text.rsplit("},", 1)[0] + "}]"
    text = text.replace("'", '"')
    if "\\" in text:
        text = text.replace("\\", "")
    try:
        items = json.loads(text)
    except (ValueError, RecursionError):
        return None
    if type(items) is not list:
        return None
    seen: set[Row] = set()
    coords: list[Row] = []
    labels: list[str] = []
    integral = True
    for item in items:
        if type(item) is not dict or "bbox_2d" not in item or "label" not in item:
            continue
        box, exact = _coords(item["bbox_2d"])
        label = item["label"]
        if box is None or type(label) is not str or box in seen:  # json gives exact str, list, dict
            continue
        seen.add(box)
        coords.append(box)
        labels.append(label)
        integral = integral and exact
    if not coords:
        return None
    rows = tuple(coords)
    return Boxes(np.array(rows, dtype=np.float64), tuple(labels), integral, rows)


def extract_boxes(text: str) -> Boxes | None:
    """Boxes of the first ``<answer>…</answer>`` of ``text``; ``None`` when there is no valid box.

    >>> len(extract_boxes("<answer>\\n[{'bbox_2d': [0, 0, 5, 5], 'label': 'Cat'}]\\n</answer>"))
    1
    """
    return parse_box_list(answer_content(text.strip()).lower())


def normalize_boxes(boxes: Boxes, width: int, height: int, scale: float = 1000.0) -> Boxes | None:
    """Pixel coordinates → ``int(x / width · scale)``, ``int(y / height · scale)`` (truncation).

    As V-Triune's ``normalize_bbox_by_real_size``; boxes are not de-duplicated again. A box
    whose normalised coordinates overflow is dropped; ``None`` when none is left.

    >>> normalize_boxes(Boxes(np.array([[10.0, 5.0, 99.9, 50.0]]), ("a",)), 200, 100).xyxy
    array([[ 50.,  50., 499., 500.]])
    """
    xyxy = boxes.xyxy.copy()
    with np.errstate(over="ignore", invalid="ignore"):
        xyxy[:, 0::2] = np.trunc(xyxy[:, 0::2] / float(width) * scale)
        xyxy[:, 1::2] = np.trunc(xyxy[:, 1::2] / float(height) * scale)
    keep = np.isfinite(xyxy).all(axis=1)
    if not keep.any():
        return None
    integral = bool((np.abs(xyxy[keep]) < _EXACT).all())  # truncated: integers when finite
    if keep.all():
        return Boxes(xyxy, boxes.labels, integral)
    labels = tuple(label for label, k in zip(boxes.labels, keep, strict=True) if k)
    return Boxes(xyxy[keep], labels, integral)
