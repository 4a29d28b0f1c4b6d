"""How one alert rule judges one series, a point at a time: pure functions over a small state.

The state of a (rule, run, source, key) is a plain dict (stored as JSON in ``AlertState``): what
the rule needs of the past, never the series itself, so each new point costs O(window) at most,
whatever the length of the run:

- ``last``: the last step judged; a step at or before it (a replay, a late batch) is not judged
  twice.
- ``hold`` / ``clear``: consecutive steps the condition held / did not hold.
- ``since``: the first step of the current holding streak, and ``since_value`` its value.
- ``recent``: the last ``window`` finite values as ``[step, value]`` (change rules only).
- ``seen``: points of the series judged so far (the warm-up of change rules).

:func:`judge` returns the new state and a :class:`Verdict`: whether the condition held at this
step (``None`` when the rule could not judge it: a late step, the warm-up, a flat window) and
what the message of an alert needs (the baseline a change was measured against, and where).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from statistics import median

# 1.4826 x MAD estimates the standard deviation of normally distributed values.
MAD_SCALE = 1.4826


@dataclass(frozen=True)
class RuleSpec:
    """What :func:`judge` reads of an ``AlertRule``."""

    kind: str  # threshold | change | not_finite | rate
    condition: str = "above"  # above | below (threshold, rate); drop | rise (change)
    threshold: float = 0.0
    window: int = 1
    change_by: str = "fraction"  # fraction | mad
    warmup: int = 0


@dataclass(frozen=True)
class Verdict:
    holds: bool | None  # None: not judged at this step
    streak: int = 0  # consecutive steps it has held, this one included
    since: int | None = None  # first step of the streak
    since_value: float | None = None
    baseline: float | None = None  # change: the trailing median the value was compared with
    baseline_steps: tuple[int, int] | None = None  # change: the steps of that window
    scale: float | None = None  # change by MAD: 1.4826 x MAD of the window
    detail: dict = field(default_factory=dict)


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def condition_holds(condition: str, value: float | None, threshold: float) -> bool:
    """Whether one value violates a threshold rule (a missing value stands for NaN/inf)."""
    if condition == "not_finite":
        return not _finite(value)
    if not _finite(value):
        return False
    if condition == "above":
        return value > threshold
    if condition == "below":
        return value < threshold
    raise ValueError(f"unknown condition {condition!r}")


def change_holds(
    spec: RuleSpec, value: float, window: list[float]
) -> tuple[bool | None, float, float | None]:
    """Whether ``value`` dropped/rose against the trailing ``window`` of values; and the median
    (and the robust scale, for ``mad``) it was measured against.

    By fraction f: a drop is ``value < m - f|m|``, a rise ``value > m + f|m|`` (m the median); by
    MAD k: a drop is ``value < m - k s``, a rise ``value > m + k s``, s = 1.4826 MAD. A window with
    no spread (s = 0) cannot judge by MAD (None), nor can a fraction of a zero median.

    >>> change_holds(RuleSpec("change", "drop", 0.5), 0.2, [0.6, 0.62, 0.58])  # 0.2 < 0.6 - 0.3
    (True, 0.6, None)
    >>> change_holds(RuleSpec("change", "rise", 3, change_by="mad"), 9.0, [1.0, 2.0, 3.0])
    (True, 2.0, 1.4826)
    """
    m = median(window)
    if spec.change_by == "mad":
        scale = MAD_SCALE * median(abs(v - m) for v in window)
        if scale == 0:
            return None, m, scale
        margin = spec.threshold * scale
    else:
        scale = None
        if m == 0:
            return None, m, None
        margin = spec.threshold * abs(m)
    if spec.condition == "drop":
        return value < m - margin, m, scale
    if spec.condition == "rise":
        return value > m + margin, m, scale
    raise ValueError(f"a change rule drops or rises, not {spec.condition!r}")


def judge(spec: RuleSpec, state: dict, step: int, value: float | None) -> tuple[dict, Verdict]:
    """The rule's verdict on the series' point at ``step``, and the state after it.

    ``value`` is the point's value (None: non-finite); for a rate rule, the ratio already computed.
    The state given is not changed.
    """
    state = dict(state)
    last = state.get("last")
    if last is not None and step <= last:
        return state, Verdict(holds=None)
    state["last"] = step
    baseline = scale = None
    steps = None
    if spec.kind == "not_finite":
        holds: bool | None = not _finite(value)
    elif spec.kind in ("threshold", "rate"):
        holds = condition_holds(spec.condition, value, spec.threshold) if _finite(value) else None
    elif spec.kind == "change":
        recent = [list(p) for p in state.get("recent", [])]
        seen = state.get("seen", 0)
        holds = None
        if _finite(value):
            if seen >= spec.warmup and len(recent) >= spec.window:
                holds, baseline, scale = change_holds(spec, value, [v for _, v in recent])
                steps = (recent[0][0], recent[-1][0])
            recent = [*recent, [step, value]][-spec.window :]
            state["recent"] = recent
            state["seen"] = seen + 1
    else:
        raise ValueError(f"rule kind {spec.kind!r} is not judged point by point")
    if holds is None:
        return state, Verdict(holds=None)
    if holds:
        if not state.get("hold"):
            state["since"] = step
            state["since_value"] = value if _finite(value) else None
        state["hold"] = state.get("hold", 0) + 1
        state["clear"] = 0
    else:
        state["hold"] = 0
        state["clear"] = state.get("clear", 0) + 1
        state.pop("since", None)
        state.pop("since_value", None)
    return state, Verdict(
        holds=holds,
        streak=state["hold"],
        since=state.get("since"),
        since_value=state.get("since_value"),
        baseline=baseline,
        baseline_steps=steps,
        scale=scale,
    )


def fires(spec: RuleSpec, verdict: Verdict) -> bool:
    """Whether a verdict opens an alert: the condition held for ``window`` consecutive steps
    (threshold, rate), or at this step (change: its window is the trailing one; not_finite)."""
    if not verdict.holds:
        return False
    needed = spec.window if spec.kind in ("threshold", "rate") else 1
    return verdict.streak >= max(needed, 1)


def clears(state: dict, auto_resolve_steps: int) -> bool:
    """Whether an open alert resolves itself: the condition has been clear for the given span."""
    return auto_resolve_steps > 0 and state.get("clear", 0) >= auto_resolve_steps


def glob_matches(pattern: str, name: str) -> bool:
    """A rule's key or source pattern: exact, or a prefix ending in ``*`` (``*`` alone: anything).

    >>> glob_matches("grad_norm/vision.*", "grad_norm/vision.3")
    True
    >>> glob_matches("reward/final", "reward/finals")
    False
    """
    if pattern.endswith("*"):
        return name.startswith(pattern[:-1])
    return pattern == name


def source_matches(pattern: str, source: str) -> bool:
    """An empty source pattern is every source, the global one ("") included."""
    return pattern == "" or glob_matches(pattern, source)


def _fmt(value: float | None) -> str:
    if value is None:
        return "NaN/inf"
    return f"{value:.4g}"


def describe(
    *,
    rule_name: str,
    spec: RuleSpec,
    key: str,
    source: str,
    step: int,
    value: float | None,
    verdict: Verdict,
    denominator_key: str = "",
    context: str = "",
    hint: str = "",
) -> str:
    """An alert's message: what was seen, where, and where to look.

    >>> message = describe(
    ...     rule_name="final reward drop", spec=RuleSpec("change", "drop", 0.5, window=8),
    ...     key="reward/final", source="synth_detection", step=48, value=0.08,
    ...     verdict=Verdict(True, 1, 48, 0.08, 0.62, (40, 47)),
    ...     context="right after the IoU threshold rose to 0.95 at step 46")
    >>> message.split(": ", 1)[1]  # doctest: +NORMALIZE_WHITESPACE
    'synth_detection reward/final fell from 0.62 (median of steps 40–47) to 0.08 at step 48,
     right after the IoU threshold rose to 0.95 at step 46'
    """
    where = f"{source} {key}" if source else key
    if spec.kind == "change":
        verb = "fell" if spec.condition == "drop" else "rose"
        low, high = verdict.baseline_steps or (step, step)
        text = (
            f"{where} {verb} from {_fmt(verdict.baseline)} (median of steps {low}–{high})"
            f" to {_fmt(value)} at step {step}"
        )
        if verdict.scale:
            text += f", {abs(value - verdict.baseline) / verdict.scale:.1f} robust deviations"
    elif spec.kind == "not_finite":
        text = f"{where} is NaN or infinite at step {step}"
    elif spec.kind == "rate":
        side = "above" if spec.condition == "above" else "below"
        text = f"{where} / {denominator_key} = {_fmt(value)} at step {step}, {side} {_fmt(spec.threshold)}"
        if verdict.streak > 1:
            text += f" for {verdict.streak} steps (since step {verdict.since})"
    else:
        side = "above" if spec.condition == "above" else "below"
        text = f"{where} = {_fmt(value)} at step {step}, {side} {_fmt(spec.threshold)}"
        if verdict.streak > 1:
            text += f" for {verdict.streak} steps (since step {verdict.since}, {_fmt(verdict.since_value)})"
    if context:
        text += f", {context}"
    if hint:
        text += f"; {hint}"
    return f"{rule_name}: {text}"
