"""The run's life cycle as an explicit state machine; every transition goes through here.

pending → queued → submitted → running → succeeded | failed | cancelled, plus cancelling
(a stop was asked of Ray) and lost (Ray no longer knows the job). A resume takes an ended run
(failed, cancelled, lost) back to queued as a new attempt. Each transition is recorded as a
:class:`RunEvent` and broadcast to the run's channel group once the transaction commits.
"""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from control.errors import Conflict
from control.models import Run, RunEvent
from control.services.alerts import alert_rules_on_run_state
from control.services.broadcast import broadcast_to_run
from control.services.tokens import run_tokens_revoke

S = Run.Status

ALLOWED: dict[str, frozenset[str]] = {
    S.PENDING: frozenset({S.QUEUED, S.CANCELLED}),
    S.QUEUED: frozenset({S.SUBMITTED, S.FAILED, S.CANCELLED}),
    S.SUBMITTED: frozenset({S.RUNNING, S.SUCCEEDED, S.FAILED, S.CANCELLING, S.CANCELLED, S.LOST}),
    S.RUNNING: frozenset({S.SUCCEEDED, S.FAILED, S.CANCELLING, S.CANCELLED, S.LOST}),
    S.CANCELLING: frozenset({S.CANCELLED, S.SUCCEEDED, S.FAILED, S.LOST}),
    S.SUCCEEDED: frozenset(),
    S.FAILED: frozenset({S.QUEUED}),
    S.CANCELLED: frozenset({S.QUEUED}),
    S.LOST: frozenset({S.QUEUED}),
}


def transition_allowed(current: str, target: str) -> bool:
    """Whether a run in state ``current`` may move to ``target``.

    >>> transition_allowed("pending", "queued"), transition_allowed("succeeded", "queued")
    (True, False)
    """
    return target in ALLOWED.get(current, frozenset())


def run_status_payload(run: Run) -> dict:
    """What a watching page needs to redraw the run's header."""
    return {
        "id": run.pk,
        "status": run.status,
        "attempt": run.attempt,
        "last_step": run.last_step,
        "total_steps": run.total_steps,
        "resumed_from_step": run.resumed_from_step,
        "error": run.error,
    }


@transaction.atomic
def run_transition(*, run: Run | int, to: str, reason: str = "", **updates: object) -> Run:
    """Move a run to state ``to``, recording why; refuses a transition the machine does not allow.

    ``updates`` are other fields of the run written in the same UPDATE (``error``,
    ``ray_submission_id``, ...). A run already in state ``to`` is returned unchanged (no event),
    so racing callers (the reconciler and the first metrics) are harmless.
    """
    run_id = run if isinstance(run, int) else run.pk
    locked = Run.objects.select_for_update().get(pk=run_id)
    current = locked.status
    if current == to:
        return locked
    if not transition_allowed(current, to):
        raise Conflict(f"run {run_id} cannot go from {current} to {to}" + (f" ({reason})" if reason else ""))
    now = timezone.now()
    fields = {"status": to, **updates}
    if to == S.QUEUED:
        fields.setdefault("queued_at", now)
        fields.setdefault("finished_at", None)
    elif to == S.RUNNING:
        if locked.started_at is None:
            fields["started_at"] = now
        fields.setdefault("attempt_started_at", now)
        fields.setdefault("attempt_started_step", locked.last_step)
    elif to in Run.TERMINAL:
        fields.setdefault("finished_at", now)
    for name, value in fields.items():
        setattr(locked, name, value)
    locked.save(update_fields=list(fields))
    RunEvent.objects.create(
        run=locked, from_status=current, to_status=to, reason=reason[:5000], attempt=locked.attempt
    )
    if to in Run.TERMINAL:
        # The attempt's job has exited: its token must not write to the run (nor to a resumed one).
        run_tokens_revoke(run=locked)
    payload = {"type": "run.status", "run": run_status_payload(locked)}
    transaction.on_commit(lambda: broadcast_to_run(run_id, payload))
    alert_rules_on_run_state(run=locked)
    return locked


def run_transition_quietly(*, run: Run | int, to: str, reason: str = "", **updates: object) -> Run | None:
    """:func:`run_transition`, or None when the machine refuses it (the run moved on meanwhile)."""
    try:
        return run_transition(run=run, to=to, reason=reason, **updates)
    except Conflict:
        return None
