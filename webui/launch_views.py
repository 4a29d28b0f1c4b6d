"""The launch form: a new run of a project, or a new run pre-filled from an earlier one (clone).

A submission is checked like ``POST /api/v1/runs/`` (the API's own serializer, then
run_start: create and launch, both or neither), so the page refuses exactly what the API
refuses; each message is shown beside the field it names, and a refused launch creates
nothing. Members and owners may launch; a viewer is refused, a non-member gets 404.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from control.api.runs import RunInput, run_fields
from control.errors import DomainError, Forbidden, NotFound
from control.models import ComputeTarget, DataSource, Project, Run
from control.selectors.data import data_sources_list, tags_list
from control.selectors.projects import check_can_write, object_get_for_user
from control.services.launch import LaunchError, preset_defaults, target_offers
from control.services.runs import PRESETS, SourceWeight, run_start
from webui.access import project_or_404
from webui.launch_forms import (
    HYPER_FIELDS,
    MODEL_PATH,
    TOP,
    ConfigField,
    LaunchForm,
    clone_values,
    format_number,
    place_errors,
    preset_values,
)

DEFAULT_PRESET = "tiny-cpu-demo"
MAX_LISTED_SOURCES = 500


def _refused(request: HttpRequest, message: str) -> HttpResponse:
    return render(request, "webui/error.html", {"title": "Not allowed", "message": message}, status=403)


def _writable(request: HttpRequest, project: Project) -> str | None:
    """None when the user may launch runs in ``project``, else why not."""
    try:
        check_can_write(user=request.user, project=project)
    except Forbidden as exc:
        return exc.message
    return None


@require_http_methods(["GET", "POST"])
@login_required
def run_new_page(request: HttpRequest, project_id: int) -> HttpResponse:
    project = project_or_404(request, project_id)
    problem = _writable(request, project)
    if problem:
        return _refused(request, problem)
    return _launch_page(request, project, origin=None)


@require_http_methods(["GET", "POST"])
@login_required
def run_clone_page(request: HttpRequest, run_id: int) -> HttpResponse:
    try:
        origin = object_get_for_user(
            Run.objects.select_related("project"), user=request.user, pk=run_id, label="run"
        )
    except NotFound as exc:
        raise Http404(exc.message) from exc
    problem = _writable(request, origin.project)
    if problem:
        return _refused(request, problem)
    return _launch_page(request, origin.project, origin=origin)


def _targets(chosen: str) -> list[dict[str, Any]]:
    """The enabled compute targets and what each offers; ``local`` is listed even before its row exists.

    A ``chosen`` target that is not among them (a clone's disabled target) is listed too, so that
    the launch check says what is wrong with it.
    """
    targets = list(ComputeTarget.objects.filter(enabled=True))
    if not ComputeTarget.objects.filter(name=ComputeTarget.LOCAL).exists():
        # Created on first use by the launch (control.services.launch.compute_target_get).
        targets.insert(0, ComputeTarget(name=ComputeTarget.LOCAL, description="The platform's own Ray head."))
    targets.sort(key=lambda t: (not t.is_local, t.name))
    listed = []
    for target in targets:
        offers = target_offers(target)
        cpu, gpu = offers.get("CPU"), offers.get("GPU")
        parts = [f"{cpu:g} CPU" if cpu is not None else "CPUs not declared"]
        parts.append(f"{gpu:g} GPU" if gpu is not None else "GPUs not declared")
        listed.append(
            {
                "name": target.name,
                "description": target.description,
                "offers": ", ".join(parts),
                "cpu": "" if cpu is None else f"{cpu:g}",
                "gpu": "" if gpu is None else f"{gpu:g}",
            }
        )
    if chosen and chosen not in {t["name"] for t in listed}:
        missing = {"name": chosen[:200], "description": "", "offers": "not available", "cpu": "", "gpu": ""}
        listed.append(missing)
    return listed


def _launch_page(request: HttpRequest, project: Project, *, origin: Run | None) -> HttpResponse:
    listed = data_sources_list(user=request.user, project_id=project.pk).order_by("name", "id")
    sources = list(listed[:MAX_LISTED_SOURCES])
    defaults = {name: preset_defaults(name) for name in PRESETS}
    errors: dict[str, list[str]] = {}
    if request.method == "POST":
        form = LaunchForm(request.POST, sources=sources)
        values = {name: request.POST.get(name, "") for name in form.fields}
        weights = {s.pk: request.POST.get(f"weight_{s.pk}", "") for s in sources}
        checked = {int(v) for v in request.POST.getlist("source") if v.isdigit()}
        run, errors = _submit(request, project, form, defaults, origin)
        if run is not None:
            messages.success(request, f"Run {run.name} is {run.status}.")
            return redirect("run", run_id=run.pk)
    else:
        if origin is not None:
            values = clone_values(origin, defaults.get(origin.preset) or defaults[DEFAULT_PRESET])
            mixture = {item.data_source_id: item.weight for item in origin.run_sources.all()}
        else:
            values = {
                **preset_values(defaults[DEFAULT_PRESET]),
                "preset": DEFAULT_PRESET,
                "compute_target": ComputeTarget.LOCAL,
                "num_cpus": "1",
                "num_gpus": "0",
            }
            mixture = {}
        weights = {s.pk: format_number(mixture.get(s.pk, 1.0)) for s in sources}
        checked = set(mixture)
    context = {
        "project": project,
        "origin": origin,
        "values": values,
        "errors": errors,
        "top_errors": errors.get(TOP, []),
        "rows": _source_rows(sources, checked, weights, errors),
        "task_types": sorted({s.task_type for s in sources}),
        "tags": tags_list(user=request.user, project_id=project.pk),
        "presets": PRESETS,
        "preset_values": {name: preset_values(defaults[name]) for name in PRESETS},
        "targets": _targets(values.get("compute_target", "")),
        "model_field": _field_context(MODEL_PATH, values, errors),
        "hyper_fields": [_field_context(f, values, errors) for f in HYPER_FIELDS],
        "truncated": len(sources) >= MAX_LISTED_SOURCES,
    }
    status = 400 if errors else 200
    return render(request, "webui/run_launch.html", context, status=status)


def _submit(
    request: HttpRequest, project: Project, form: LaunchForm, defaults: dict, origin: Run | None
) -> tuple[Run | None, dict[str, list[str]]]:
    """Create and launch the run; ``(run, {})``, or ``(None, errors by place)`` and nothing created."""
    if not form.is_complete():
        errors = {name: [str(m) for m in texts] for name, texts in form.errors.items()}
        for name, texts in form.problems.items():
            errors.setdefault(name, []).extend(texts)
        return None, errors
    data = form.cleaned_data
    advanced = data["advanced"]
    payload = {
        "project": project.pk,
        "name": data["name"],
        "description": data["description"],
        "preset": data["preset"],
        "config": form.config(defaults[data["preset"]]),
        "compute_target": data["compute_target"],
        "total_steps": data["total_steps"],
        "num_cpus": data["num_cpus"],
        "num_gpus": data["num_gpus"],
        "sources": [{"data_source": s.pk, "weight": w} for s, w in data["mixture"]],
    }
    checked = RunInput(data=payload)
    if not checked.is_valid():
        return None, place_errors(_flatten(checked.errors), advanced)
    v = checked.validated_data
    mixture = {s.pk: s for s, _ in data["mixture"]}
    try:
        run = run_start(
            project=project,
            user=request.user,
            sources=[SourceWeight(mixture[item["data_source"]], item["weight"]) for item in v["sources"]],
            cloned_from=origin,
            **run_fields(v),
        )
    except LaunchError as exc:
        return None, place_errors(exc.fields or {TOP: [exc.message]}, advanced)
    except DomainError as exc:
        # run_create's fields carry codes ("empty", "weight"): its message says what to change.
        where = next(iter(exc.fields), TOP)
        return None, place_errors({where: [exc.message]}, advanced)
    return run, {}


def _flatten(errors: Any, name: str = "") -> dict[str, list[str]]:
    """A serializer's nested errors as ``{"sources": [...], "config": [...]}``."""
    flat: dict[str, list[str]] = {}
    if isinstance(errors, dict):
        for key, value in errors.items():
            key = TOP if key == "non_field_errors" else key
            top = name or key
            for inner, texts in _flatten(value, top).items():
                flat.setdefault(inner, []).extend(texts)
    elif isinstance(errors, list):
        for item in errors:
            if isinstance(item, dict | list):
                for inner, texts in _flatten(item, name).items():
                    flat.setdefault(inner, []).extend(texts)
            else:
                flat.setdefault(name or TOP, []).append(str(item))
    return flat


def _field_context(
    field: ConfigField, values: dict[str, str], errors: dict[str, list[str]]
) -> dict[str, Any]:
    return {
        "name": field.name,
        "label": field.label,
        "key": field.dotted,
        "hint": field.hint,
        "placeholder": "= algo.lr" if field.blank_is_null else "",
        "value": values.get(field.name, ""),
        "errors": errors.get(field.name, []),
    }


def _source_rows(
    sources: list[DataSource], checked: set[int], weights: dict[int, str], errors: dict[str, list[str]]
) -> list[dict[str, Any]]:
    """One row per source, with its share of the mixture among the checked ones (as launch.js computes)."""
    numbers = {}
    for source in sources:
        try:
            numbers[source.pk] = float(weights.get(source.pk, ""))
        except ValueError:
            numbers[source.pk] = 0.0
    used = {pk: w for pk, w in numbers.items() if pk in checked and 0 < w < float("inf")}
    total = sum(used.values())
    rows = []
    for source in sources:
        share = 100 * used[source.pk] / total if source.pk in used else None
        rows.append(
            {
                "source": source,
                "tags": [tag.name for tag in source.tags.all()],
                "checked": source.pk in checked,
                "weight": weights.get(source.pk, ""),
                "share": "" if share is None else f"{share:.1f} %",
                "errors": errors.get(f"weight_{source.pk}", []),
            }
        )
    return rows
