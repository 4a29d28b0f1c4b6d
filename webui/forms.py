"""Forms of the data pages: filtering the source list and editing one source."""

from __future__ import annotations

from django import forms

from control.models import DataSource

MAX_TAGS = 100
MAX_TAG_LENGTH = 64


class SourceFilterForm(forms.Form):
    """Query parameters of the data-source list; a field that does not validate is not applied."""

    tag = forms.CharField(max_length=MAX_TAG_LENGTH, required=False)
    task_type = forms.ChoiceField(choices=[("", "any task"), *DataSource.TaskType.choices], required=False)
    search = forms.CharField(max_length=200, required=False, strip=True)


def parse_tags(text: str) -> list[str]:
    """Comma-separated tag names: stripped, blanks dropped, duplicates dropped (first kept).

    >>> parse_tags(" vision, math ,, vision")
    ['vision', 'math']
    """
    seen: dict[str, None] = {}
    for part in text.split(","):
        name = part.strip()
        if name:
            seen.setdefault(name, None)
    return list(seen)


class SourceEditForm(forms.Form):
    """The user-editable fields of a source (control.services.data.data_source_update)."""

    description = forms.CharField(max_length=5000, required=False, widget=forms.Textarea(attrs={"rows": 3}))
    task_type = forms.ChoiceField(choices=DataSource.TaskType.choices)
    tags = forms.CharField(
        max_length=MAX_TAGS * (MAX_TAG_LENGTH + 2),
        required=False,
        help_text="comma-separated",
    )

    def clean_tags(self) -> list[str]:
        names = parse_tags(self.cleaned_data.get("tags", ""))
        if len(names) > MAX_TAGS:
            raise forms.ValidationError(f"at most {MAX_TAGS} tags, got {len(names)}")
        for name in names:
            if len(name) > MAX_TAG_LENGTH:
                raise forms.ValidationError(
                    f"tag {name[:20]!r}… is {len(name)} characters; the limit is {MAX_TAG_LENGTH}"
                )
        return names
