"""Every page under the Content-Security-Policy in a real browser: no violation, charts still drawn,
websockets still live, Swagger UI still working from this host's own files.

The policy allows scripts, styles and connections from this origin only; the test listens to the
browser's console and to ``securitypolicyviolation`` events on every page it opens.
"""

from __future__ import annotations

import pytest

from tests.e2e.conftest import login
from tests.e2e.test_run_page import PASSWORD, WAIT_MS, Trainer, _step_points

pytestmark = pytest.mark.e2e

# Records every CSP violation of the page (and of the frames it makes) before any of its scripts run.
VIOLATION_SPY = """
(() => {
  window.__csp = [];
  document.addEventListener("securitypolicyviolation", (event) => {
    window.__csp.push(`${event.violatedDirective} blocked ${event.blockedURI || "inline"}`
                      + ` at ${event.sourceFile}:${event.lineNumber}`);
  });
})();
"""


class Watch:
    """The page's CSP violations, console errors and uncaught errors, across navigations."""

    def __init__(self, page) -> None:
        self.page = page
        self.console: list[str] = []
        self.errors: list[str] = []
        self.external: list[str] = []
        page.add_init_script(VIOLATION_SPY)
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        page.on("request", self._request)
        page.on("response", self._response)
        self.unpoliced: list[str] = []

    def _console(self, message) -> None:
        if message.type == "error" or "Content Security Policy" in message.text:
            self.console.append(message.text)

    def _request(self, request) -> None:
        if not request.url.startswith(("http://127.0.0.1", "ws://127.0.0.1", "data:", "blob:")):
            self.external.append(request.url)

    def _response(self, response) -> None:
        if response.request.resource_type == "document":
            policy = response.headers.get("content-security-policy", "")
            if "script-src 'self'" not in policy or "frame-ancestors 'none'" not in policy:
                self.unpoliced.append(response.url)

    def assert_clean(self, where: str) -> None:
        assert self.unpoliced == [], (where, "pages without the policy", self.unpoliced)
        violations = self.page.evaluate("() => window.__csp || []")
        assert violations == [], (where, violations)
        csp = [line for line in self.console if "Content Security Policy" in line or "Refused to" in line]
        assert csp == [], (where, csp)
        assert self.errors == [], (where, self.errors)
        assert self.external == [], (where, self.external)


@pytest.fixture
def world(make_user, make_project, make_source, make_rule):
    from control.models import Run
    from control.services.runs import SourceWeight, run_create

    user = make_user("cspuser", password=PASSWORD)
    project = make_project(user, "policy")
    counting = make_source(project, "synth_counting", task_type="counting")
    detection = make_source(project, "synth_detection", task_type="detection")
    run = run_create(
        project=project,
        user=user,
        name="policed run",
        sources=[SourceWeight(counting, 1.0), SourceWeight(detection, 1.0)],
        total_steps=50,
    )
    Run.objects.filter(pk=run.pk).update(status="submitted", attempt=1, ray_submission_id="triune-test")
    run.refresh_from_db()
    rule = make_rule(project)
    return {"user": user, "project": project, "run": run, "source": counting, "rule": rule}


def test_every_page_runs_under_the_policy_without_a_violation(page, live_server_url, world):
    watch = Watch(page)
    base = live_server_url
    project = world["project"]

    page.goto(base + "/login/")
    watch.assert_clean("login")
    login(page, base, "cspuser", PASSWORD)
    page.wait_for_url(base + "/")

    for url in [
        "/",
        f"/projects/{project.pk}/",
        f"/projects/{project.pk}/datasets/",
        f"/projects/{project.pk}/datasets/upload/",
        f"/projects/{project.pk}/sources/",
        f"/sources/{world['source'].pk}/",
        f"/projects/{project.pk}/runs/",
        f"/projects/{project.pk}/runs/new/",
        f"/projects/{project.pk}/alerts/",
        f"/projects/{project.pk}/alert-rules/",
        f"/projects/{project.pk}/alert-rules/new/",
        f"/projects/{project.pk}/alert-rules/{world['rule'].pk}/",
        f"/projects/{project.pk}/channels/",
        "/tokens/",
        "/no/such/page/",
    ]:
        page.goto(base + url)
        page.wait_for_load_state("networkidle")
        watch.assert_clean(url)

    # The project switcher (a script file now, no inline handler) still opens a project.
    page.goto(base + "/tokens/")
    page.select_option("select[name=p]", str(project.pk))
    page.wait_for_url(f"{base}/projects/{project.pk}/")
    watch.assert_clean("switcher")

    # A new token's copy button (a script file now) still works, and revoking still asks first.
    page.goto(base + "/tokens/")
    page.fill("input[name=name]", "policy token")
    page.click("text=Create token")
    page.locator("#new-token").wait_for()
    page.click("#copy-token")
    page.locator("#copy-state", has_text="C").wait_for()
    questions: list[str] = []

    def answer(dialog) -> None:
        questions.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", answer)
    page.get_by_role("button", name="Revoke policy token").click()
    page.wait_for_function("() => true")
    assert questions and questions[0].startswith("Revoke this token?")
    watch.assert_clean("tokens")


def test_the_run_page_draws_and_streams_under_the_policy(page, live_server_url, world):
    watch = Watch(page)
    run = world["run"]
    trainer = Trainer(live_server_url, run)
    sources = ["synth_counting", "synth_detection"]
    trainer.post([p for step in range(3) for p in _step_points(step, sources)])

    login(page, live_server_url, "cspuser", PASSWORD)
    page.goto(f"{live_server_url}/runs/{run.pk}/")
    # The websocket to this host connects under connect-src 'self'.
    page.locator("#live-state", has_text="live").wait_for(timeout=WAIT_MS)
    page.wait_for_function(
        "() => Array.from(document.querySelectorAll('.chart')).every((div) => div.data && div.data.length)",
        timeout=WAIT_MS,
    )
    drawn = page.evaluate("() => Array.from(document.querySelectorAll('.chart .main-svg')).length")
    assert drawn > 0
    # A point sent now arrives over the websocket and is drawn.
    trainer.post(_step_points(3, sources))
    page.locator("#last-step", has_text="3").wait_for(timeout=WAIT_MS)
    page.wait_for_function(
        """() => { const div = document.querySelector('.chart[data-key="actor/pg_loss"]');
                   const x = div && div.data && div.data[0] && div.data[0].x;
                   return Boolean(x && x.length && x[x.length - 1] === 3); }""",
        timeout=WAIT_MS,
    )
    # Hovering a chart shows Plotly's hover label, which it styles at run time.
    chart = page.locator('.chart[data-key="actor/pg_loss"]')
    chart.scroll_into_view_if_needed()
    box = page.locator('.chart[data-key="actor/pg_loss"] .nsewdrag').first.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.move(box["x"] + box["width"] / 3, box["y"] + box["height"] / 2)
    watch.assert_clean("run page")


def test_the_api_docs_work_from_local_files_under_the_policy(page, live_server_url, world):
    watch = Watch(page)
    login(page, live_server_url, "cspuser", PASSWORD)
    page.goto(live_server_url + "/api/docs/")
    page.locator(".swagger-ui .info .title", has_text="Triune API").wait_for(timeout=WAIT_MS)
    page.locator(".opblock-summary-path", has_text="/api/v1/runs/").first.wait_for(timeout=WAIT_MS)
    page.wait_for_load_state("networkidle")
    watch.assert_clean("api docs")
