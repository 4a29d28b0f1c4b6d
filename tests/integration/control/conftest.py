"""A small world of two projects, each with a source, tag, run, rule and alert, for permission tests."""

from __future__ import annotations

from dataclasses import dataclass

import pytest


@dataclass
class World:
    owner: object
    viewer: object
    member: object
    stranger: object
    newbie: object
    project: object
    source: object
    tag: object
    run: object
    rule: object
    alert: object
    token: object
    upload: object
    foreign: object
    f_source: object
    f_tag: object
    f_run: object
    f_rule: object
    f_alert: object
    f_token: object
    f_upload: object
    channel: object = None
    f_channel: object = None
    run_token: object = None

    def ids(self) -> dict[str, int | str]:
        """Placeholders of the endpoint table, filled with this world's objects of ``project``."""
        return {
            "project": self.project.pk,
            "dataset": self.source.dataset_version.dataset_id,
            "source": self.source.pk,
            "tag": self.tag.pk,
            "run": self.run.pk,
            "rule": self.rule.pk,
            "alert": self.alert.pk,
            "token": self.token.pk,
            "channel": self.channel.pk,
            "run_token": self.run_token.pk,
            "upload": str(self.upload.pk),
            "split": "train",
            "index": 0,
            "image": 0,
            "report": "0" * 32,
            "target": self.target_id(),
            "artifact": 987654,
        }

    @staticmethod
    def target_id() -> int:
        from control.models import ComputeTarget

        return ComputeTarget.objects.get(name="local").pk


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    """PBKDF2 at its production cost takes ~0.5 s a user; these tests make many users."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def storage(storage_root):
    """Storage in a temporary directory, so uploads never touch the installation's data."""
    return storage_root


@pytest.fixture
def world(make_user, make_project, make_source, make_run, make_rule, add_member, ingest, storage):
    from control.models import Alert, Tag
    from control.services.datasets import upload_create
    from control.services.notifications import channel_create
    from control.services.tokens import api_token_create

    owner, viewer, member = make_user("olivia"), make_user("victor"), make_user("mia")
    stranger, newbie = make_user("mallory"), make_user("newbie")
    project, foreign = make_project(owner, "vision"), make_project(stranger, "elsewhere")
    add_member(project, viewer, "viewer")
    add_member(project, member, "member")

    def populate(p, who):
        source = make_source(p, name="geo_math")
        tag = Tag.objects.create(project=p, name="reasoning")
        run = make_run(p, user=who, sources=[source])
        rule = make_rule(p, name="accuracy collapse")
        # reward/accuracy 0.1 < 0.5 with window 1 fires the rule at once.
        ingest(run, (0, "reward/accuracy", "geo_math", 0.1))
        alert = Alert.objects.get(run=run)
        token, _ = api_token_create(user=who, name="laptop")
        upload = upload_create(project=p, user=who, filename="more.jsonl", size=4)
        return source, tag, run, rule, alert, token, upload

    mine = populate(project, owner)
    theirs = populate(foreign, stranger)
    world = World(owner, viewer, member, stranger, newbie, project, *mine, foreign, *theirs)
    world.channel, world.f_channel = (
        channel_create(project=p, user=who, name="on call", kind="email", email="oncall@example.com")
        for p, who in ((project, owner), (foreign, stranger))
    )
    world.run_token, _ = api_token_create(user=owner, name=f"run {world.run.pk} attempt 1", run=world.run)
    return world
