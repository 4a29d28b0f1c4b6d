"""Synthetic data of the eight V-Triune task types, drawn with PIL, with checkable answers.

Each task draws a small image and writes a question whose answer follows
from how the image was drawn: arithmetic and geometry (math), dot and number
sequences (puzzle), a measured quantity over time (science), bar charts
(chart), rendered words (OCR), shapes to count (counting), labelled shapes to
box (detection) and one described shape to box (grounding). Rows follow the
sample schema (DESIGN.md §3) in the Orsta-Data-47k layout, one ``data_source``
per task, so the whole pipeline (validation, mixture, rewards, per-source
metrics) can run without any downloaded data.

Everything is a pure function of (seed, task, index): the same seed gives
identical bytes. Text uses PIL's bundled default font only.
"""

from __future__ import annotations

import io
import json
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import fsspec
from PIL import Image, ImageDraw, ImageFont

from trainer.data.reader import write_jsonl, write_parquet
from trainer.data.splits import split_file_name

# DESIGN.md §3: detection rewards weighted as in V-Triune's data.
DETECTION_VERIFIER_PARM: dict[str, Any] = {
    "det_verifier_normalized": True,
    "det_reward_ratio": {
        "iou_max_label_first": 1.0,
        "iou_max_iou_first": 0.0,
        "iou_completeness": 0.3,
        "map": 0.0,
        "map50": 0.0,
        "map75": 0.0,
    },
}
DETECTION_INSTRUCTION = (
    "First think it through inside <think> and </think> tags, then give the boxes in pixels of this image"
    " inside <answer> and </answer> tags.\nFor example:\n<think>\nYour reasoning here.\n</think>\n"
    "<answer>\n[{'bbox_2d': [x1,y1,x2,y2],'label': label_name}]\n</answer>"
)
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (215, 40, 40),
    "green": (40, 150, 60),
    "blue": (40, 80, 215),
    "orange": (240, 135, 20),
    "purple": (135, 55, 175),
    "black": (20, 20, 20),
}
# Words checked to be read by math-verify as one unit (``\text{...}``) and distinct from each other.
OCR_WORDS: dict[str, tuple[str, ...]] = {
    "easy": ("cat", "dog", "sun", "map", "cup", "box", "red", "hat", "pen", "car", "bus", "owl"),
    "medium": ("apple", "river", "green", "house", "table", "light", "stone", "music", "plant", "cloud"),
    "hard": ("rainbow", "giraffe", "kitchen", "blanket", "chicken", "picture", "monster", "thunder"),
}


@dataclass(frozen=True, slots=True)
class Difficulty:
    """Knobs shared by the tasks; ``easy`` keeps answers small for a tiny model."""

    name: str
    max_operand: int  # math: operands drawn from [1, max_operand]
    math_kinds: tuple[str, ...]  # math: which problems (add, sub, mul, expr, area, perimeter, angle)
    sequence_panels: int  # puzzle: panels shown before the "?"
    sequence_steps: tuple[int, ...]  # puzzle: allowed common differences
    number_sequences: bool  # puzzle: also printed-number sequences (arithmetic and doubling)
    bars: tuple[int, int]  # chart: number of bars (min, max)
    bar_labels: bool  # chart: values printed on the bars
    chart_questions: tuple[str, ...]  # chart: value, sum, difference
    science_questions: tuple[str, ...]  # science: read, change, predict
    max_count: int  # counting: up to this many targets
    distractors: int  # counting/detection/grounding: up to this many other shapes
    max_boxes: int  # detection: up to this many boxes to find
    # detection: side of each shape as a fraction of the image side (min, max); None: shapes
    # shrink as the image gets crowded
    object_size: tuple[float, float] | None
    noise: int  # speckles of noise drawn on the background
    same_color: bool  # counting/detection: distractors may share the targets' colour


DIFFICULTIES: dict[str, Difficulty] = {
    "easy": Difficulty(
        name="easy",
        max_operand=9,
        math_kinds=("add",),
        sequence_panels=3,
        sequence_steps=(1,),
        number_sequences=False,
        bars=(3, 3),
        bar_labels=True,
        chart_questions=("value",),
        science_questions=("read",),
        max_count=5,
        distractors=0,
        # One shape of 2/7..3/7 of the image side: the tiny Qwen3-VL learns to box it in a few
        # hundred warm-start steps (0.55 held-out accuracy at IoU 0.5 after 400 steps on 112 px
        # images; the tiny Qwen2-VL 0.11), where up to two shapes of half that side stayed at 0.01.
        max_boxes=1,
        object_size=(2 / 7, 3 / 7),
        noise=0,
        same_color=False,
    ),
    "medium": Difficulty(
        name="medium",
        max_operand=20,
        math_kinds=("add", "sub", "mul", "area"),
        sequence_panels=3,
        sequence_steps=(1, 2),
        number_sequences=False,
        bars=(3, 5),
        bar_labels=False,
        chart_questions=("value", "sum"),
        science_questions=("read", "change"),
        max_count=9,
        distractors=3,
        max_boxes=4,
        object_size=None,
        noise=150,
        same_color=False,
    ),
    "hard": Difficulty(
        name="hard",
        max_operand=50,
        math_kinds=("sub", "mul", "expr", "area", "perimeter", "angle"),
        sequence_panels=4,
        sequence_steps=(1, 2, 3),
        number_sequences=True,
        bars=(4, 6),
        bar_labels=False,
        chart_questions=("value", "sum", "difference"),
        science_questions=("change", "predict"),
        max_count=14,
        distractors=6,
        max_boxes=6,
        object_size=None,
        noise=600,
        same_color=True,
    ),
}

Box = tuple[int, int, int, int]  # pixels, (x1, y1, x2, y2), x2/y2 exclusive


@dataclass(slots=True)
class Drawn:
    """What a task maker returns: the image, the question, and the answer (text or boxes)."""

    image: Image.Image
    question: str
    answer: str = ""  # mathverify: the content of \boxed{}
    boxes: list[tuple[str, Box]] = field(default_factory=list)  # detection: (label, pixel box)


@dataclass(frozen=True, slots=True)
class TaskSpec:
    """One synthetic task: its source, ability, verifier and image maker."""

    name: str
    data_source: str
    ability: str
    verifier: str
    make: Callable[[random.Random, Difficulty, int], Drawn]


@dataclass(slots=True)
class SynthSample:
    """A generated row and, for detection and grounding, its boxes in pixels of the image."""

    row: dict[str, Any]
    boxes_px: list[tuple[str, Box]]
    image_size: tuple[int, int]


TASKS: dict[str, TaskSpec] = {}


def register_task(name: str, *, ability: str, verifier: str) -> Callable[[Callable], Callable]:
    """Register an image maker as task ``name`` (data source ``synth_<name>``); twice raises."""

    def decorator(make: Callable[[random.Random, Difficulty, int], Drawn]) -> Callable:
        if name in TASKS:
            raise ValueError(f"synthetic task {name!r} is already registered")
        TASKS[name] = TaskSpec(name, f"synth_{name}", ability, verifier, make)
        return make

    return decorator


def get_task(name: str) -> TaskSpec:
    """The task called ``name``; an unknown name raises and lists the known ones."""
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"unknown synthetic task {name!r}; known: {', '.join(TASKS)}") from None


def get_difficulty(name: str) -> Difficulty:
    """The difficulty preset ``name``; an unknown name raises and lists the known ones."""
    try:
        return DIFFICULTIES[name]
    except KeyError:
        raise ValueError(f"unknown difficulty {name!r}; known: {', '.join(DIFFICULTIES)}") from None


# ------------------------------------------------------------------------------------------ drawing


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=max(8, size))


def _canvas(rng: random.Random, size: int, difficulty: Difficulty) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    shade = 255 if difficulty.noise == 0 else rng.randint(235, 255)
    image = Image.new("RGB", (size, size), (shade, shade, shade))
    draw = ImageDraw.Draw(image)
    for _ in range(difficulty.noise * size * size // (224 * 224)):
        x, y = rng.randrange(size), rng.randrange(size)
        grey = rng.randint(150, 230)
        draw.point((x, y), fill=(grey, grey, grey))
    return image, draw


def _polygon(points: Callable[[float, float, float, float], list[tuple[float, float]]]) -> Callable:
    def draw_polygon(draw: ImageDraw.ImageDraw, x1: float, y1: float, x2: float, y2: float, fill) -> None:
        draw.polygon(points(x1, y1, x2, y2), fill=fill)

    return draw_polygon


# Each drawer fills the pixels x1..x2, y1..y2 (inclusive) of a square box.
_SHAPE_DRAWERS: dict[str, Callable[..., None]] = {
    "circle": lambda draw, x1, y1, x2, y2, fill: draw.ellipse((x1, y1, x2, y2), fill=fill),
    "square": lambda draw, x1, y1, x2, y2, fill: draw.rectangle((x1, y1, x2, y2), fill=fill),
    "triangle": _polygon(lambda x1, y1, x2, y2: [(x1, y2), ((x1 + x2) / 2, y1), (x2, y2)]),
    "diamond": _polygon(
        lambda x1, y1, x2, y2: [
            ((x1 + x2) / 2, y1),
            (x2, (y1 + y2) / 2),
            ((x1 + x2) / 2, y2),
            (x1, (y1 + y2) / 2),
        ]
    ),
}


SHAPES = tuple(_SHAPE_DRAWERS)


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, box: Box, fill: tuple[int, int, int]) -> None:
    """Fill ``shape`` inside ``box`` (x2/y2 exclusive, so the last pixel drawn is x2 - 1)."""
    x1, y1, x2, y2 = box
    _SHAPE_DRAWERS[shape](draw, x1, y1, x2 - 1, y2 - 1, fill)


def _place_boxes(
    rng: random.Random, count: int, canvas: int, side: tuple[int, int], gap: int = 3
) -> list[Box]:
    """``count`` square boxes inside the canvas that neither overlap nor touch (rejection sampling).

    When the canvas is too crowded the side range shrinks and placement starts
    again, so the call always returns ``count`` boxes for any sane input.
    """
    low, high = side
    for _ in range(8):
        boxes: list[Box] = []
        for _ in range(count * 200):
            if len(boxes) == count:
                break
            s = rng.randint(low, high)
            x, y = rng.randint(2, canvas - s - 2), rng.randint(2, canvas - s - 2)
            candidate = (x, y, x + s, y + s)
            if all(
                candidate[2] + gap <= b[0]
                or b[2] + gap <= candidate[0]
                or candidate[3] + gap <= b[1]
                or b[3] + gap <= candidate[1]
                for b in boxes
            ):
                boxes.append(candidate)
        if len(boxes) == count:
            return boxes
        low, high = max(4, low * 3 // 4), max(4, high * 3 // 4)
    raise ValueError(f"cannot place {count} shapes on a {canvas}-pixel canvas")


def _centered_text(
    draw: ImageDraw.ImageDraw, xy: tuple[float, float], text: str, size: int, fill=(0, 0, 0)
) -> None:
    draw.text(xy, text, font=_font(size), fill=fill, anchor="mm")


# -------------------------------------------------------------------------------------------- tasks


@register_task("math", ability="math", verifier="mathverify")
def _make_math(rng: random.Random, difficulty: Difficulty, size: int) -> Drawn:
    kind = rng.choice(difficulty.math_kinds)
    image, draw = _canvas(rng, size, difficulty)
    top = difficulty.max_operand
    if kind in ("add", "sub", "mul", "expr"):
        a, b = rng.randint(1, top), rng.randint(1, top)
        if kind == "add":
            text, value = f"{a} + {b} = ?", a + b
        elif kind == "sub":
            a, b = max(a, b), min(a, b)
            text, value = f"{a} - {b} = ?", a - b
        elif kind == "mul":
            b = rng.randint(2, 9)
            text, value = f"{a} x {b} = ?", a * b
        else:
            c = rng.randint(2, 9)
            text, value = f"{a} + {b} x {c} = ?", a + b * c
        _centered_text(draw, (size / 2, size / 2), text, size // 8)
        return Drawn(image, "What is the value of the expression in the image?", str(value))
    if kind in ("area", "perimeter"):
        side = min(top, 12)
        w = rng.randint(2, side)
        h = rng.randint(max(2, w // 3), min(side, w * 3))
        scale = (size * 0.6) / max(w, h)
        pw, ph = max(8, int(w * scale)), max(8, int(h * scale))
        x0, y0 = (size - pw) // 2, (size - ph) // 2
        draw.rectangle((x0, y0, x0 + pw, y0 + ph), outline=(0, 0, 0), width=2)
        _centered_text(draw, (x0 + pw / 2, y0 - size * 0.07), f"{w} cm", size // 12)
        draw.text((x0 + pw + 4, y0 + ph / 2), f"{h} cm", font=_font(size // 12), fill=(0, 0, 0), anchor="lm")
        if kind == "area":
            return Drawn(image, "What is the area of the rectangle, in square centimetres?", str(w * h))
        return Drawn(image, "What is the perimeter of the rectangle, in centimetres?", str(2 * (w + h)))
    # angle: two angles of a triangle are marked, the third is asked.
    a, b = rng.randint(30, 80), rng.randint(30, 80)
    left, right, apex = (size * 0.12, size * 0.8), (size * 0.88, size * 0.8), (size * 0.45, size * 0.2)
    draw.polygon([left, right, apex], outline=(0, 0, 0), width=2)
    _centered_text(draw, (left[0] + size * 0.1, left[1] - size * 0.05), f"{a}°", size // 12)
    _centered_text(draw, (right[0] - size * 0.1, right[1] - size * 0.05), f"{b}°", size // 12)
    _centered_text(draw, (apex[0], apex[1] + size * 0.1), "?", size // 12)
    return Drawn(
        image,
        "Two angles of the triangle are marked. How many degrees is the angle marked '?'?",
        str(180 - a - b),
    )


@register_task("puzzle", ability="puzzle", verifier="mathverify")
def _make_puzzle(rng: random.Random, difficulty: Difficulty, size: int) -> Drawn:
    image, draw = _canvas(rng, size, difficulty)
    panels = difficulty.sequence_panels
    width = size / (panels + 1)
    if difficulty.number_sequences and rng.random() < 0.5:
        start = rng.randint(1, 9)
        if rng.random() < 0.5:
            step = rng.randint(2, 9)
            values = [start + step * i for i in range(panels + 1)]
        else:
            values = [start * 2**i for i in range(panels + 1)]
        for i in range(panels + 1):
            x0 = i * width
            draw.rectangle((x0 + 2, size * 0.35, x0 + width - 2, size * 0.65), outline=(0, 0, 0), width=1)
            label = str(values[i]) if i < panels else "?"
            _centered_text(draw, (x0 + width / 2, size / 2), label, int(width * 0.35))
        return Drawn(image, "The numbers follow a pattern. Which number replaces the '?'?", str(values[-1]))
    # Three starts even at one step size: with a single start every easy answer was 4, which a
    # warm-start memorises, leaving GRPO nothing to learn.
    start = rng.randint(1, 3)
    step = rng.choice(difficulty.sequence_steps)
    counts = [start + step * i for i in range(panels + 1)]
    color = COLORS[rng.choice(("red", "blue", "green", "black"))]
    for i in range(panels + 1):
        x0 = i * width
        draw.rectangle((x0 + 2, size * 0.3, x0 + width - 2, size * 0.7), outline=(0, 0, 0), width=1)
        if i == panels:
            _centered_text(draw, (x0 + width / 2, size / 2), "?", int(width * 0.4))
            continue
        columns = 3
        cell = (width - 8) / columns
        radius = max(1.5, cell * 0.3)
        for k in range(counts[i]):
            cx = x0 + 4 + cell * (k % columns) + cell / 2
            cy = size * 0.3 + 4 + cell * (k // columns) + cell / 2
            draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=color)
    return Drawn(
        image,
        "Each box holds dots that follow a pattern. How many dots belong in the box with the '?'?",
        str(counts[-1]),
    )


def _axes(
    draw: ImageDraw.ImageDraw, size: int, top_value: int, ticks: int
) -> tuple[float, float, float, float]:
    """Draw axes with a labelled, gridded y scale; return the plot area (left, top, right, bottom)."""
    left, top, right, bottom = size * 0.16, size * 0.14, size * 0.95, size * 0.84
    font_size = max(8, size // 20)
    for t in range(ticks + 1):
        value = top_value * t // ticks
        y = bottom - (bottom - top) * value / top_value
        draw.line((left, y, right, y), fill=(215, 215, 215), width=1)
        draw.text((left - 3, y), str(value), font=_font(font_size), fill=(0, 0, 0), anchor="rm")
    draw.line((left, top, left, bottom), fill=(0, 0, 0), width=1)
    draw.line((left, bottom, right, bottom), fill=(0, 0, 0), width=1)
    return left, top, right, bottom


@register_task("chart", ability="chart", verifier="mathverify")
def _make_chart(rng: random.Random, difficulty: Difficulty, size: int) -> Drawn:
    image, draw = _canvas(rng, size, difficulty)
    count = rng.randint(*difficulty.bars)
    names = [chr(ord("A") + i) for i in range(count)]
    top_value = 10
    values = rng.sample(range(1, top_value + 1), count)
    left, top, right, bottom = _axes(draw, size, top_value, 5 if not difficulty.bar_labels else 2)
    slot = (right - left) / count
    font_size = max(8, size // 18)
    palette = list(COLORS.values())
    for i, (name, value) in enumerate(zip(names, values, strict=True)):
        x0 = left + slot * i + slot * 0.2
        x1 = left + slot * (i + 1) - slot * 0.2
        y = bottom - (bottom - top) * value / top_value
        draw.rectangle((x0, y, x1, bottom), fill=palette[i % len(palette)])
        draw.text(((x0 + x1) / 2, bottom + 3), name, font=_font(font_size), fill=(0, 0, 0), anchor="mt")
        if difficulty.bar_labels:
            draw.text(((x0 + x1) / 2, y - 2), str(value), font=_font(font_size), fill=(0, 0, 0), anchor="mb")
    question = rng.choice(difficulty.chart_questions)
    if question == "value":
        i = rng.randrange(count)
        return Drawn(image, f"What is the value of bar {names[i]} in the chart?", str(values[i]))
    if question == "sum":
        i, j = rng.sample(range(count), 2)
        return Drawn(
            image,
            f"What is the sum of the values of bars {names[i]} and {names[j]}?",
            str(values[i] + values[j]),
        )
    return Drawn(
        image,
        "What is the difference between the tallest and the shortest bar's values?",
        str(max(values) - min(values)),
    )


@register_task("science", ability="science", verifier="mathverify")
def _make_science(rng: random.Random, difficulty: Difficulty, size: int) -> Drawn:
    image, draw = _canvas(rng, size, difficulty)
    quantity, unit = rng.choice(
        (("temperature of heated water", "degrees"), ("distance of a rolling cart", "metres"))
    )
    minutes = 5
    start, rate = rng.randint(0, 10), rng.randint(1, 4)
    values = [start + rate * t for t in range(minutes + 1)]
    top_value = 30
    left, top, right, bottom = _axes(draw, size, top_value, 6)
    font_size = max(8, size // 20)
    points = []
    for t, value in enumerate(values):
        x = left + (right - left) * t / minutes
        y = bottom - (bottom - top) * value / top_value
        points.append((x, y))
        draw.text((x, bottom + 3), str(t), font=_font(font_size), fill=(0, 0, 0), anchor="mt")
    draw.line(points, fill=COLORS["blue"], width=2)
    for x, y in points:
        draw.ellipse((x - 2.5, y - 2.5, x + 2.5, y + 2.5), fill=COLORS["red"])
    label_points = "read" in difficulty.science_questions and difficulty.name == "easy"
    if label_points:
        for (x, y), value in zip(points, values, strict=True):
            draw.text((x, y - 4), str(value), font=_font(font_size), fill=(0, 0, 0), anchor="mb")
    draw.text(
        (size / 2, size * 0.02), f"{quantity} vs. minutes", font=_font(font_size), fill=(0, 0, 0), anchor="mt"
    )
    question = rng.choice(difficulty.science_questions)
    if question == "read":
        t = rng.randint(0, minutes)
        return Drawn(
            image, f"The plot shows the {quantity}. What is it at minute {t}, in {unit}?", str(values[t])
        )
    if question == "change":
        t0, t1 = sorted(rng.sample(range(minutes + 1), 2))
        return Drawn(
            image,
            f"The plot shows the {quantity}. By how many {unit} does it grow"
            f" from minute {t0} to minute {t1}?",
            str(values[t1] - values[t0]),
        )
    t = rng.randint(minutes + 1, minutes + 4)
    return Drawn(
        image,
        f"The plot shows the {quantity}, which grows at a constant rate."
        f" What will it be at minute {t}, in {unit}?",
        str(start + rate * t),
    )


@register_task("ocr", ability="ocr", verifier="mathverify")
def _make_ocr(rng: random.Random, difficulty: Difficulty, size: int) -> Drawn:
    image, draw = _canvas(rng, size, difficulty)
    word = rng.choice(OCR_WORDS[difficulty.name])
    color = COLORS[rng.choice(("black", "blue", "red", "purple"))]
    font_size = size // (4 + len(word) // 3)
    x = size / 2 + rng.randint(-size // 16, size // 16)
    y = size / 2 + rng.randint(-size // 5, size // 5)
    draw.text(
        (x, y), word.upper() if rng.random() < 0.5 else word, font=_font(font_size), fill=color, anchor="mm"
    )
    if difficulty.noise:
        for _ in range(3):
            draw.line(
                (rng.randrange(size), rng.randrange(size), rng.randrange(size), rng.randrange(size)),
                fill=(170, 170, 170),
                width=1,
            )
    # \text{} makes math-verify compare the word as a whole (a bare "cat" would parse as c·a·t = "act").
    return Drawn(image, "What word is written in the image? Answer in lower case.", f"\\text{{{word}}}")


def _shape_sides(size: int, count: int) -> tuple[int, int]:
    high = max(10, int(size / (2.2 + count**0.5 * 1.1)))
    return max(8, high * 2 // 3), high


@register_task("counting", ability="counting", verifier="mathverify")
def _make_counting(rng: random.Random, difficulty: Difficulty, size: int) -> Drawn:
    image, draw = _canvas(rng, size, difficulty)
    target = rng.choice(SHAPES[:3])
    count = rng.randint(1, difficulty.max_count)
    others = rng.randint(0, difficulty.distractors)
    boxes = _place_boxes(rng, count + others, size, _shape_sides(size, count + others))
    target_color = rng.choice(list(COLORS))
    for i, box in enumerate(boxes):
        if i < count:
            _draw_shape(draw, target, box, COLORS[target_color])
        else:
            shape = rng.choice([s for s in SHAPES if s != target])
            color = (
                target_color
                if difficulty.same_color
                else rng.choice([c for c in COLORS if c != target_color])
            )
            _draw_shape(draw, shape, box, COLORS[color])
    return Drawn(image, f"How many {target}s are there in the image?", str(count))


@register_task("detection", ability="cv_detection", verifier="detection")
def _make_detection(rng: random.Random, difficulty: Difficulty, size: int) -> Drawn:
    image, draw = _canvas(rng, size, difficulty)
    classes = SHAPES[:3]
    count = rng.randint(1, difficulty.max_boxes)
    others = rng.randint(0, difficulty.distractors // 2)
    sides = _shape_sides(size, count + others)
    if difficulty.object_size is not None:
        low, high = difficulty.object_size
        sides = (max(4, round(size * low)), max(4, round(size * high)))
    boxes = _place_boxes(rng, count + others, size, sides)
    found: list[tuple[str, Box]] = []
    for i, box in enumerate(boxes):
        color = COLORS[rng.choice(list(COLORS))]
        if i < count:
            label = rng.choice(classes)
            _draw_shape(draw, label, box, color)
            found.append((label, box))
        else:
            _draw_shape(draw, "diamond", box, color)  # never asked for
    asked = sorted({label for label, _ in found}, key=classes.index)
    if difficulty.name != "easy":
        asked = list(classes)  # absent classes are asked too: the answer must leave them out
    listing = "\n".join(f"- {name}" for name in asked)
    question = f"\nLocate every object of these classes in the image:\n{listing}\n\n{DETECTION_INSTRUCTION}"
    found.sort(key=lambda item: (item[1][1], item[1][0]))
    return Drawn(image, question, boxes=found)


@register_task("grounding", ability="cv_grounding", verifier="detection")
def _make_grounding(rng: random.Random, difficulty: Difficulty, size: int) -> Drawn:
    image, draw = _canvas(rng, size, difficulty)
    others = rng.randint(1 if difficulty.name == "easy" else 2, max(2, difficulty.distractors))
    boxes = _place_boxes(rng, 1 + others, size, _shape_sides(size, 1 + others))
    shapes, colors = list(SHAPES[:3]), list(COLORS)
    target = (rng.choice(shapes), rng.choice(colors))
    used = {target}
    _draw_shape(draw, target[0], boxes[0], COLORS[target[1]])
    for box in boxes[1:]:
        while True:
            if difficulty.name == "easy":  # nothing shares the target's shape or colour
                other = (
                    rng.choice([s for s in shapes if s != target[0]]),
                    rng.choice([c for c in colors if c != target[1]]),
                )
            else:
                other = (rng.choice(shapes), rng.choice(colors))
            if other not in used or difficulty.name == "easy":
                break
        used.add(other)
        _draw_shape(draw, other[0], box, COLORS[other[1]])
    label = f"{target[1]} {target[0]}"
    question = f"\nFind the {label} in the image and give its bounding box.\n\n{DETECTION_INSTRUCTION}"
    return Drawn(image, question, boxes=[(label, boxes[0])])


# ---------------------------------------------------------------------------------------------- rows


def normalize_box(box: Box, width: int, height: int) -> list[int]:
    """Pixel box → the 0–1000 scale, with the detection reward's formula ``int(x / width · 1000)``.

    Using the same expression as the reward's normalisation means a model that
    answers the drawn pixel box exactly is scored exactly on the ground truth.

    >>> normalize_box((28, 56, 112, 224), 224, 224)
    [125, 250, 500, 1000]
    """
    x1, y1, x2, y2 = box
    return [int(x1 / width * 1000), int(y1 / height * 1000), int(x2 / width * 1000), int(y2 / height * 1000)]


def boxes_answer(boxes: Sequence[tuple[str, Sequence[int]]]) -> str:
    """V-Triune's answer text: ``[{'bbox_2d': [x1, y1, x2, y2], 'label': 'circle'}, ...]``."""
    items = ", ".join(
        f"{{'bbox_2d': [{b[0]}, {b[1]}, {b[2]}, {b[3]}], 'label': '{label}'}}" for label, b in boxes
    )
    return f"[{items}]"


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False, compress_level=6)
    return buffer.getvalue()


def generate_sample(
    task: str,
    index: int,
    *,
    seed: int = 0,
    difficulty: str = "easy",
    image_size: int = 224,
    format_ratio: float = 0.1,
) -> SynthSample:
    """Sample ``index`` of task ``task``: a pure function of its arguments."""
    spec = get_task(task)
    level = get_difficulty(difficulty)
    if not 56 <= image_size <= 2048:
        raise ValueError(f"image_size must be in [56, 2048], got {image_size}")
    if not 0.0 <= format_ratio <= 1.0:
        raise ValueError(f"format_ratio must be in [0, 1], got {format_ratio}")
    rng = random.Random(f"{seed}\x1f{task}\x1f{level.name}\x1f{index}")
    drawn = spec.make(rng, level, image_size)
    width, height = drawn.image.size
    path = f"images/{spec.data_source}/{index:06d}.png"
    reward_model: dict[str, Any] = {
        "accuracy_ratio": 1.0,
        "format_ratio": format_ratio,
        "verifier": spec.verifier,
    }
    if spec.verifier == "detection":
        answer = boxes_answer([(label, normalize_box(box, width, height)) for label, box in drawn.boxes])
        reward_model.update(
            answer=answer,
            ground_truth=f"<answer>\n{answer}\n</answer>",
            verifier_parm=json.loads(json.dumps(DETECTION_VERIFIER_PARM)),
        )
    else:
        reward_model.update(answer=drawn.answer, ground_truth=f"\\boxed{{{drawn.answer}}}")
    row = {
        "data_source": spec.data_source,
        "images": [{"bytes": _png(drawn.image), "path": path}],
        "prompt": [{"role": "user", "content": f"<image>{drawn.question}"}],
        "ability": spec.ability,
        "reward_model": reward_model,
        "extra_info": {"id": f"{spec.data_source}-{level.name}-{seed}-{index:06d}", "image_path": path},
    }
    return SynthSample(row=row, boxes_px=list(drawn.boxes), image_size=(width, height))


def generate_rows(task: str, start: int, stop: int, **kwargs: Any) -> Iterator[dict[str, Any]]:
    """Rows ``start`` … ``stop - 1`` of a task, generated lazily (keywords as :func:`generate_sample`)."""
    for index in range(start, stop):
        yield generate_sample(task, index, **kwargs).row


def task_type_of(task: str) -> str:
    """The DESIGN.md task type of a synthetic task (they share names)."""
    return get_task(task).name


def generate_dataset(
    out: str,
    *,
    tasks: Sequence[str] | None = None,
    per_source: int = 1000,
    seed: int = 0,
    image_size: int = 224,
    difficulty: str = "easy",
    file_format: str = "parquet",
    test_fraction: float = 0.2,
    format_ratio: float = 0.1,
) -> dict[str, Any]:
    """Write train and test files per source plus ``manifest.json`` under ``out``; return the manifest.

    Files are named ``{split}_{task}_{source}_{n}.{ext}`` (Orsta's naming). In
    JSONL format the images are written under ``out/images/<source>/`` and the
    rows name them by that relative path.
    """
    names = list(tasks) if tasks is not None else list(TASKS)
    for name in names:
        get_task(name)
    get_difficulty(difficulty)
    if file_format not in ("parquet", "jsonl"):
        raise ValueError(f"unknown format {file_format!r}; known: parquet, jsonl")
    if per_source < 1:
        raise ValueError(f"per_source must be at least 1, got {per_source}")
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction}")
    n_test = round(per_source * test_fraction)
    n_train = per_source - n_test
    fs, root = fsspec.core.url_to_fs(out)
    fs.makedirs(root, exist_ok=True)
    base = out.rstrip("/")
    options = {"seed": seed, "difficulty": difficulty, "image_size": image_size, "format_ratio": format_ratio}
    sources = []
    for name in names:
        spec = get_task(name)
        files = {}
        for split, start, stop in (("train", 0, n_train), ("test", n_train, per_source)):
            if stop == start:
                continue
            file_name = split_file_name(split, spec.name, spec.data_source, stop - start, file_format)
            rows = generate_rows(name, start, stop, **options)
            if file_format == "parquet":
                write_parquet(rows, f"{base}/{file_name}")
            else:
                write_jsonl(rows, f"{base}/{file_name}", images_dir=base)
            files[split] = {"file": file_name, "rows": stop - start}
        sources.append(
            {
                "data_source": spec.data_source,
                "task_type": task_type_of(name),
                "ability": spec.ability,
                "verifier": spec.verifier,
                "splits": files,
            }
        )
    manifest = {
        "generator": "trainer.data.synth",
        "seed": seed,
        "difficulty": difficulty,
        "image_size": image_size,
        "format": file_format,
        "format_ratio": format_ratio,
        "per_source": per_source,
        "test_fraction": test_fraction,
        "images_root": "." if file_format == "jsonl" else None,
        "task_types": [source["task_type"] for source in sources],
        "sources": sources,
    }
    with fs.open(f"{root.rstrip('/')}/manifest.json", "w") as handle:
        handle.write(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest
