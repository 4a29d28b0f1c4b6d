"""The runs list of a project: state, progress, sparkline of the final reward, filters, compare."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


@pytest.fixture
def browser(client, user):
    client.force_login(user)
    return client


def test_sparkline_points_scale_into_the_box():
    from webui.runs_views import sparkline_points

    assert sparkline_points([]) == ""
    assert sparkline_points([2.0], width=10, height=4) == "0.0,4.0"
    assert sparkline_points([0.0, 0.5, 1.0], width=10, height=4) == "0.0,4.0 5.0,2.0 10.0,0.0"


def test_the_runs_list_shows_progress_and_the_last_final_reward(browser, project, make_run, ingest):
    from control.services.run_lifecycle import run_transition

    run = make_run(project, name="orsta <b>7b</b>", total_steps=10)
    for status in ("queued", "submitted", "running"):
        run_transition(run=run, to=status, attempt=1)
    ingest(run, *[(step, "reward/final", "", step / 10) for step in range(1, 5)])
    ingest(run, (4, "perf/step_time", "", 2.0), (4, "reward/final", "geo", 0.9))
    page = browser.get(f"/projects/{project.pk}/runs/").content.decode()
    assert "orsta &lt;b&gt;7b&lt;/b&gt;" in page and "<b>7b</b>" not in page
    assert '<progress max="10" value="4">' in page and "ETA 12 s" in page
    # The global final reward, not a source's: the last value is 0.4.
    assert "0.400" in page and 'class="spark"' in page


def test_filters_by_state_and_source_tag(browser, project, make_run, make_source):
    from control.models import Tag

    tagged = make_source(project, name="tagged")
    tag = Tag.objects.create(project=project, name="perception")
    tagged.tags.add(tag)
    with_tag = make_run(project, name="with-tag", sources=[tagged])
    make_run(project, name="without-tag")
    page = browser.get(f"/projects/{project.pk}/runs/", {"tag": "perception"}).content.decode()
    assert "with-tag" in page and "without-tag" not in page
    from control.services.run_lifecycle import run_transition

    run_transition(run=with_tag, to="cancelled")
    page = browser.get(f"/projects/{project.pk}/runs/", {"status": "cancelled"}).content.decode()
    assert "with-tag" in page and "without-tag" not in page
    # An unknown state is ignored rather than an error.
    assert browser.get(f"/projects/{project.pk}/runs/", {"status": "<script>"}).status_code == 200


def test_compare_opens_the_first_run_with_the_others_overlaid(
    browser, project, make_run, make_project, other_user
):
    first, second = make_run(project), make_run(project)
    foreign = make_run(make_project(other_user))
    response = browser.get(
        f"/projects/{project.pk}/runs/compare/", {"run": [first.pk, foreign.pk, second.pk]}
    )
    assert response.status_code == 302
    assert response["Location"] == f"/runs/{first.pk}/?overlay={second.pk}"
    nothing = browser.get(f"/projects/{project.pk}/runs/compare/", {"run": [foreign.pk]})
    assert nothing.status_code == 302 and nothing["Location"] == f"/projects/{project.pk}/runs/"


def test_another_projects_runs_are_404_and_anonymous_goes_to_login(client, project, other_user, make_project):
    foreign = make_project(other_user)
    assert client.get(f"/projects/{project.pk}/runs/").status_code == 302
    client.force_login(other_user)
    assert client.get(f"/projects/{project.pk}/runs/").status_code == 404
    assert client.get(f"/projects/{foreign.pk}/runs/").status_code == 200
