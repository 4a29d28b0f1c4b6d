"""The built-in text the tiny tokenizer is trained on.

The tiny model only has to tokenize what the RL loop feeds it compactly: chat
prompts, step-by-step reasoning, LaTeX answers in ``\\boxed{}``, ``<think>`` /
``<answer>`` tags and detection answers written as JSON box lists. The corpus is
generated from fixed templates with a seeded :class:`random.Random`, so it is the
same on every call and on every machine.
"""

from __future__ import annotations

import random

ENGLISH_WORDS = (
    "the of and to a in is it you that he was for on are with as his they be at one have this from "
    "or had by not word but what some we can out other were all there when up use your how said an "
    "each she which do their time if will way about many then them write would like so these her long "
    "make thing see him two has look more day could go come did number sound no most people my over "
    "know water than call first who may down side been now find any new work part take get place made "
    "live where after back little only round man year came show every good me give our under name very "
    "through just form sentence great think say help low line differ turn cause much mean before move "
    "right boy old too same tell does set three want air well also play small end put home read hand "
    "port large spell add even land here must big high such follow act why ask men change went light "
    "kind off need house picture try us again animal point mother world near build self earth father "
    "image question answer reason step first second third final therefore because so thus hence given "
    "find compute calculate solve equation value total area angle triangle circle square length width "
    "height radius diameter perimeter sum product difference ratio percent number count object objects "
    "person car dog cat bird tree chair table cup bottle book phone box left right top bottom center "
    "color red blue green yellow black white chart bar line pie axis label legend title year month "
    "science physics chemistry biology force mass energy speed velocity time distance temperature "
    "puzzle pattern shape next sequence option options choose correct wrong true false yes no "
    "detect locate ground bounding coordinates region text read written sign word letters digits "
    "wait let me check again verify re-check re-evaluate re-examine rethink think again try yet "
    "please put your final answer within boxed output the format inside tags assistant user system "
    "carefully step-by-step explain reasoning process then provide solution"
).split()

PROMPT_TEMPLATES = (
    "<image>{q} Please reason step by step, and put your final answer within \\boxed{{}}.",
    "<image>{q} Think step by step and put the final answer in \\boxed{{}}.",
    "<image>{q} Output the thinking process in <think> </think> and final answer in <answer> </answer> tags.",
    "<image>Locate every {label} in the image and output the bounding boxes in JSON format.",
    "<image>Detect all objects of these categories: {label}, {label2}. Output bbox_2d and label as JSON.",
    "<image>How many {label}s are in the image? Put the number in \\boxed{{}}.",
    "<image>Read the text in the image. {q}",
)

QUESTIONS = (
    "What is the area of the triangle?",
    "Find the value of x.",
    "What is the length of side AB?",
    "Which option is correct? A. 12 B. 15 C. 18 D. 21",
    "What is the total shown in the chart for 2019?",
    "How many degrees is angle ABC?",
    "What comes next in the sequence?",
    "What is the speed of the car in m/s?",
)

LATEX_SNIPPETS = (
    "\\frac{1}{2}",
    "\\frac{\\sqrt{3}}{2}",
    "\\sqrt{2}",
    "x^2 + y^2 = r^2",
    "\\pi r^2",
    "2\\pi",
    "\\angle ABC = 60^\\circ",
    "\\times",
    "\\cdot",
    "\\left( a + b \\right)",
    "\\text{cm}",
    "\\leq",
    "\\geq",
    "\\neq",
    "\\approx",
    "a_{n+1} = a_n + d",
    "\\sin(30^\\circ) = \\frac{1}{2}",
)

LABELS = ("person", "car", "dog", "cat", "bird", "chair", "cup", "bottle", "book", "traffic light")


def _math_response(rng: random.Random) -> str:
    a, b = rng.randint(0, 999), rng.randint(1, 99)
    snippet = rng.choice(LATEX_SNIPPETS)
    answer = rng.choice((str(a + b), str(a * b), f"\\frac{{{a}}}{{{b}}}", f"{a}.{b}", snippet))
    think = (
        f"First, the {rng.choice(ENGLISH_WORDS)} is {a} and the {rng.choice(ENGLISH_WORDS)} is {b}. "
        f"We compute ${snippet}$ so the {rng.choice(ENGLISH_WORDS)} is ${a} + {b} = {a + b}$. "
        f"Wait, let me check again: {a} \\times {b} = {a * b}."
    )
    if rng.random() < 0.5:
        return f"<think>\n{think}\n</think>\n<answer>\n\\boxed{{{answer}}}\n</answer>"
    return f"{think} Therefore, the final answer is \\boxed{{{answer}}}."


def _detection_response(rng: random.Random) -> str:
    boxes = []
    for _ in range(rng.randint(1, 4)):
        x1, y1 = rng.randint(0, 800), rng.randint(0, 800)
        x2, y2 = x1 + rng.randint(1, 199), y1 + rng.randint(1, 199)
        boxes.append(f"{{'bbox_2d': [{x1}, {y1}, {x2}, {y2}], 'label': '{rng.choice(LABELS)}'}}")
    answer = "[" + ", ".join(boxes) + "]"
    if rng.random() < 0.5:
        answer = answer.replace("'", '"')
    return f"<think>\nThe image shows some objects.\n</think>\n<answer>\n{answer}\n</answer>"


def _prompt(rng: random.Random) -> str:
    template = rng.choice(PROMPT_TEMPLATES)
    return template.format(q=rng.choice(QUESTIONS), label=rng.choice(LABELS), label2=rng.choice(LABELS))


def _prose(rng: random.Random) -> str:
    return " ".join(rng.choice(ENGLISH_WORDS) for _ in range(rng.randint(8, 24))).capitalize() + "."


def corpus(num_lines: int = 3000, seed: int = 0) -> list[str]:
    """Return ``num_lines`` deterministic training lines (same seed, same lines)."""
    rng = random.Random(seed)
    makers = (_math_response, _detection_response, _prompt, _prose)
    lines = [" ".join(ENGLISH_WORDS), " ".join(str(i) for i in range(1000))]
    lines += [makers[i % len(makers)](rng) for i in range(num_lines)]
    return lines
