"""A project's alert rules: the list (what each watches, in words), creating and editing one,
switching one on or off, deleting one, and bringing back the built-in rules.

The form checks the shape of each value (a number, a key pattern, a list of ids); what a rule of
its kind needs is checked by control.services.alerts, exactly as for the API, and its messages
are shown beside the field they name. A project the user is not a member of answers 404; a viewer
reads the list without buttons, and the forms and POSTs answer a 403 page.
"""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.validators import RegexValidator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from control.api.alerts import KEY_PATTERN
from control.errors import Conflict, DomainError
from control.models import AlertRule, NotificationChannel, Project, Run
from control.selectors.alerts import alert_rules_list
from control.services.alert_defaults import alert_defaults_ensure
from control.services.alerts import alert_rule_create, alert_rule_update
from webui.access import can_write, forbidden_page, project_or_404

K = AlertRule.Kind
# The fields every rule has, and those each kind reads besides (the form shows only these; the
# others keep their stored or default values).
COMMON_FIELDS = ("name", "kind", "severity", "run_ids", "run_tags", "channels", "enabled")
_POINT = ("key", "source", "cooldown_seconds", "auto_resolve_steps")
KIND_FIELDS: dict[str, tuple[str, ...]] = {
    K.THRESHOLD: (*_POINT, "condition", "threshold", "window", "combine"),
    K.CHANGE: (*_POINT, "condition", "change_by", "threshold", "window", "warmup", "combine"),
    K.NOT_FINITE: (*_POINT, "combine"),
    K.RATE: (*_POINT, "denominator_key", "condition", "threshold", "window"),
    K.STALL: ("stall_minutes",),
    K.LIFECYCLE: ("lifecycle_states",),
}
# The conditions a kind takes (a not_finite rule's is always not_finite).
KIND_CONDITIONS = {
    K.THRESHOLD: ("above", "below"),
    K.RATE: ("above", "below"),
    K.CHANGE: ("drop", "rise"),
}
LIFECYCLE_STATES = [(state, state) for state in Run.TERMINAL]
MAX_RUN_IDS = 1000
MAX_RUN_TAGS = 100
MAX_TAG_LENGTH = 100


def _comma_list(text: str) -> list[str]:
    """Comma-separated names: stripped, blanks and repeats dropped (first kept).

    >>> _comma_list(" 3, 4 ,,3")
    ['3', '4']
    """
    return list(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))


class AlertRuleForm(forms.Form):
    """Every settable field of a rule, with the API's bounds (control.api.alerts._RuleFields)."""

    name = forms.CharField(max_length=200, strip=True)
    kind = forms.ChoiceField(choices=AlertRule.Kind.choices, initial=K.THRESHOLD)
    key = forms.CharField(
        max_length=200,
        required=False,
        validators=[RegexValidator(KEY_PATTERN, "a metric key such as reward/accuracy, or a prefix and *")],
        help_text="a metric key (reward/accuracy) or a prefix ending in * (grad_norm/vision.*)",
    )
    combine = forms.ChoiceField(
        choices=AlertRule.Combine.choices,
        initial=AlertRule.Combine.EACH,
        label="Several keys",
        help_text="for a key ending in *: judge each key, or the largest of them at each step",
    )
    denominator_key = forms.CharField(
        max_length=200,
        required=False,
        label="Divided by",
        validators=[RegexValidator(r"^[A-Za-z0-9_./@:+\-]{0,200}$", "a metric key such as count")],
        help_text="the key the rate divides by, at the same step (e.g. count)",
    )
    source = forms.CharField(
        max_length=200,
        required=False,
        help_text="a data source, or a prefix ending in *; empty: every source, the global one too",
    )
    condition = forms.ChoiceField(choices=AlertRule.Condition.choices, initial="above")
    change_by = forms.ChoiceField(
        choices=AlertRule.ChangeBy.choices, initial=AlertRule.ChangeBy.FRACTION, label="Change measured by"
    )
    threshold = forms.FloatField(
        initial=0.0,
        help_text="threshold and rate: the value compared; change: the fraction of the trailing median "
        "(0.5 = half) or the number of robust deviations",
    )
    window = forms.IntegerField(
        min_value=1,
        max_value=1000,
        initial=1,
        help_text="threshold and rate: consecutive steps the condition must hold; change: trailing steps",
    )
    warmup = forms.IntegerField(
        min_value=0, max_value=100_000, initial=0, help_text="steps of a series before it is judged"
    )
    stall_minutes = forms.IntegerField(
        min_value=1,
        max_value=7 * 24 * 60,
        initial=10,
        label="Minutes without a point",
        help_text="a running run that reports nothing for this long",
    )
    lifecycle_states = forms.MultipleChoiceField(
        choices=LIFECYCLE_STATES,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        label="Run states",
        help_text="the rule fires when a run reaches one of these",
    )
    run_ids = forms.CharField(
        required=False,
        max_length=10_000,
        label="Only runs",
        help_text="comma-separated run ids; empty: every run of the project",
    )
    run_tags = forms.CharField(
        required=False,
        max_length=MAX_RUN_TAGS * (MAX_TAG_LENGTH + 2),
        label="Only runs tagged",
        help_text="comma-separated tags of a run's data sources; empty: any",
    )
    severity = forms.ChoiceField(choices=AlertRule.Severity.choices, initial=AlertRule.Severity.WARNING)
    cooldown_seconds = forms.IntegerField(
        min_value=0,
        max_value=7 * 24 * 3600,
        initial=600,
        label="Cooldown (seconds)",
        help_text="no new alert of this rule on a series for this long after one",
    )
    auto_resolve_steps = forms.IntegerField(
        min_value=0,
        max_value=100_000,
        initial=0,
        label="Resolve after clear steps",
        help_text="resolve an alert once its condition has been clear this many steps; 0: by hand",
    )
    channels = forms.ModelMultipleChoiceField(
        queryset=NotificationChannel.objects.none(),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        label="Notify",
        help_text="channels besides this site; alerts always show on the run page and the alerts page",
    )
    enabled = forms.BooleanField(required=False, initial=True)

    def __init__(self, *args, project: Project, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["channels"].queryset = NotificationChannel.objects.filter(project=project)

    def clean_run_ids(self) -> list[int]:
        ids = []
        for part in _comma_list(self.cleaned_data.get("run_ids", "")):
            if not (part.isascii() and part.isdigit()) or len(part) > 12 or int(part) < 1:
                raise forms.ValidationError(f"{part[:20]!r} is not a run id (a positive whole number)")
            ids.append(int(part))
        if len(ids) > MAX_RUN_IDS:
            raise forms.ValidationError(f"at most {MAX_RUN_IDS} runs, got {len(ids)}")
        return ids

    def clean_run_tags(self) -> list[str]:
        tags = _comma_list(self.cleaned_data.get("run_tags", ""))
        if len(tags) > MAX_RUN_TAGS:
            raise forms.ValidationError(f"at most {MAX_RUN_TAGS} tags, got {len(tags)}")
        for tag in tags:
            if len(tag) > MAX_TAG_LENGTH:
                raise forms.ValidationError(f"tag {tag[:20]!r}… is longer than {MAX_TAG_LENGTH} characters")
        return tags

    def clean(self) -> dict:
        # A field the chosen kind does not read is not judged (the page hides it).
        kind = self.cleaned_data.get("kind")
        if kind in KIND_FIELDS:
            used = {*COMMON_FIELDS, *KIND_FIELDS[kind]}
            for name in [name for name in self._errors if name not in used and name != "__all__"]:
                del self._errors[name]
        return self.cleaned_data

    def rule_fields(self) -> tuple[dict, list[NotificationChannel]]:
        """The service's keyword arguments (the fields of the chosen kind) and the channels picked."""
        data = self.cleaned_data
        kind = data["kind"]
        used = [name for name in (*COMMON_FIELDS, *KIND_FIELDS[kind]) if name != "channels"]
        fields = {name: data[name] for name in used}
        if kind == K.NOT_FINITE:
            fields["condition"] = AlertRule.Condition.NOT_FINITE
        return fields, list(data["channels"])


def rule_initial(rule: AlertRule) -> dict:
    """The form's values of a stored rule."""
    initial = {name: getattr(rule, name) for name in AlertRuleForm.base_fields if name != "channels"}
    initial["run_ids"] = ", ".join(str(i) for i in rule.run_ids)
    initial["run_tags"] = ", ".join(rule.run_tags)
    initial["channels"] = [channel.pk for channel in rule.channels.all()]
    return initial


def _steps(n: int) -> str:
    return f"{n} step" if n == 1 else f"{n} steps"


def _scope(rule: AlertRule) -> str:
    parts = []
    if rule.kind in KIND_CONDITIONS or rule.kind == K.NOT_FINITE:
        if not rule.source:
            parts.append("every source")
        elif rule.source.endswith("*"):
            parts.append(f"sources {rule.source}")
        else:
            parts.append(f"source {rule.source}")
    if rule.run_ids:
        shown = ", ".join(str(i) for i in rule.run_ids[:10])
        parts.append(f"runs {shown}" + (" …" if len(rule.run_ids) > 10 else ""))
    if rule.run_tags:
        parts.append("runs with a source tagged " + " or ".join(rule.run_tags[:10]))
    return "; ".join(parts)


def rule_summary(rule: AlertRule) -> str:
    """What a rule watches, in words.

    >>> rule_summary(AlertRule(kind="threshold", key="reward/accuracy", condition="below",
    ...     threshold=0.5, window=3))
    'reward/accuracy below 0.5 for 3 steps in a row, on every source'
    """
    key = rule.key
    if rule.combine == AlertRule.Combine.MAX and key.endswith("*") and rule.kind != K.RATE:
        key = f"the largest of {key}"
    held = f" for {_steps(rule.window)} in a row" if rule.window > 1 else ""
    if rule.kind == K.THRESHOLD:
        what = f"{key} {rule.condition} {rule.threshold:g}{held}"
    elif rule.kind == K.RATE:
        what = f"{rule.key} / {rule.denominator_key} {rule.condition} {rule.threshold:g}{held}"
    elif rule.kind == K.CHANGE:
        way = "falls" if rule.condition == AlertRule.Condition.DROP else "rises"
        side = "below" if rule.condition == AlertRule.Condition.DROP else "above"
        if rule.change_by == AlertRule.ChangeBy.MAD:
            size = f"{rule.threshold:g} robust deviations"
        else:
            size = f"{rule.threshold * 100:.4g}%"
        what = f"{key} {way} more than {size} {side} its median of the last {_steps(rule.window)}"
        if rule.warmup:
            what += f", after {_steps(rule.warmup)}"
    elif rule.kind == K.NOT_FINITE:
        what = f"{key} is NaN or infinite"
    elif rule.kind == K.STALL:
        what = f"a running run reports nothing for {rule.stall_minutes} min"
    else:
        what = "a run becomes " + (" or ".join(rule.lifecycle_states) or "(no state chosen)")
    scope = _scope(rule)
    return f"{what}, on {scope}" if scope else what


# ---- pages ---------------------------------------------------------------------------------


def _rule_or_404(request: HttpRequest, project: Project, rule_id: int) -> AlertRule:
    rule = alert_rules_list(user=request.user, project_id=project.pk).filter(pk=rule_id).first()
    if rule is None:
        raise Http404(f"alert rule {rule_id} does not exist in project {project.pk}")
    return rule


@require_GET
@login_required
def alert_rules_page(request: HttpRequest, project_id: int) -> HttpResponse:
    project = project_or_404(request, project_id)
    rules = alert_rules_list(user=request.user, project_id=project.pk).prefetch_related("channels")
    rows = [{"rule": rule, "summary": rule_summary(rule)} for rule in rules.order_by("name", "id")]
    context = {"project": project, "rows": rows, "can_write": can_write(request, project)}
    return render(request, "webui/alert_rules.html", context)


def _field_rows(form: AlertRuleForm) -> list[dict]:
    """The form's fields in page order, each with the kinds that read it (space-separated)."""
    kinds_of: dict[str, list[str]] = {}
    for kind, names in KIND_FIELDS.items():
        for name in names:
            kinds_of.setdefault(name, []).append(kind)
    rows = []
    for name in form.fields:
        field = form[name]
        choices = isinstance(field.field.widget, forms.CheckboxSelectMultiple)
        if field.errors and not choices:
            described = [f"error-{name}"] + ([f"{field.auto_id}_helptext"] if field.help_text else [])
            field.field.widget.attrs["aria-describedby"] = " ".join(described)
        rows.append(
            {
                "name": name,
                "field": field,
                "kinds": " ".join(kinds_of.get(name, [])),
                "choices": choices,
                "checkbox": isinstance(field.field.widget, forms.CheckboxInput),
            }
        )
    return rows


def _save(form: AlertRuleForm, save) -> AlertRule | None:
    """Call ``save(fields, channels)``; a refusal of the service goes beside the field it names."""
    fields, channels = form.rule_fields()
    try:
        return save(fields, channels)
    except DomainError as exc:
        named = {name: errors for name, errors in exc.fields.items() if name in form.fields}
        if named:
            for name, errors in named.items():
                for error in errors:
                    form.add_error(name, error)
        elif isinstance(exc, Conflict):
            form.add_error("name", exc.message)
        else:
            form.add_error(None, exc.message)
    return None


def _form_page(request: HttpRequest, project: Project, form: AlertRuleForm, rule: AlertRule | None):
    context = {
        "project": project,
        "form": form,
        "rows": _field_rows(form),
        "rule": rule,
        "kind_conditions": {kind: " ".join(names) for kind, names in KIND_CONDITIONS.items()},
    }
    return render(request, "webui/alert_rule_form.html", context, status=400 if form.errors else 200)


@require_http_methods(["GET", "POST"])
@login_required
def alert_rule_new(request: HttpRequest, project_id: int) -> HttpResponse:
    project = project_or_404(request, project_id)
    if not can_write(request, project):
        return forbidden_page(request, project)
    if request.method == "GET":
        return _form_page(request, project, AlertRuleForm(project=project), None)
    form = AlertRuleForm(request.POST, project=project)
    if form.is_valid():
        rule = _save(
            form,
            lambda fields, channels: alert_rule_create(
                project=project, user=request.user, channels=channels, **fields
            ),
        )
        if rule is not None:
            messages.success(request, f"Alert rule {rule.name} created.")
            return redirect("alert-rules", project_id=project.pk)
    return _form_page(request, project, form, None)


@require_http_methods(["GET", "POST"])
@login_required
def alert_rule_edit(request: HttpRequest, project_id: int, rule_id: int) -> HttpResponse:
    project = project_or_404(request, project_id)
    rule = _rule_or_404(request, project, rule_id)
    if not can_write(request, project):
        return forbidden_page(request, project)
    if request.method == "GET":
        return _form_page(request, project, AlertRuleForm(initial=rule_initial(rule), project=project), rule)
    form = AlertRuleForm(request.POST, project=project)
    if form.is_valid():
        saved = _save(
            form, lambda fields, channels: alert_rule_update(rule=rule, channels=channels, **fields)
        )
        if saved is not None:
            messages.success(request, f"Alert rule {saved.name} saved.")
            return redirect("alert-rules", project_id=project.pk)
        rule.refresh_from_db()  # the refused values were set on it
    return _form_page(request, project, form, rule)


@require_POST
@login_required
def alert_rule_enable(request: HttpRequest, project_id: int, rule_id: int) -> HttpResponse:
    project = project_or_404(request, project_id)
    rule = _rule_or_404(request, project, rule_id)
    if not can_write(request, project):
        return forbidden_page(request, project)
    enabled = request.POST.get("enabled") == "1"
    try:
        alert_rule_update(rule=rule, enabled=enabled)
    except DomainError as exc:
        messages.error(request, f"Alert rule {rule.name}: {exc.message}")
    else:
        messages.success(request, f"Alert rule {rule.name} {'enabled' if enabled else 'disabled'}.")
    return redirect("alert-rules", project_id=project.pk)


@require_POST
@login_required
def alert_rule_delete(request: HttpRequest, project_id: int, rule_id: int) -> HttpResponse:
    project = project_or_404(request, project_id)
    rule = _rule_or_404(request, project, rule_id)
    if not can_write(request, project):
        return forbidden_page(request, project)
    name = rule.name
    rule.delete()
    messages.success(request, f"Alert rule {name} deleted, with its alerts.")
    return redirect("alert-rules", project_id=project.pk)


@require_POST
@login_required
def alert_rules_restore(request: HttpRequest, project_id: int) -> HttpResponse:
    project = project_or_404(request, project_id)
    if not can_write(request, project):
        return forbidden_page(request, project)
    created = alert_defaults_ensure(project=project, user=request.user)
    if created:
        names = ", ".join(rule.name for rule in created)
        messages.success(request, f"Restored {len(created)} built-in rule(s): {names}.")
    else:
        messages.info(request, "Every built-in rule is already here (or a rule of yours has its name).")
    return redirect("alert-rules", project_id=project.pk)
