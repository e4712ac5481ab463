"""Mapping history: versions recorded by the service (no git needed) and from git, rule diffs, the page."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine

from service.admin import history
from service.mapping.spec import folder
from service.store.engine import session
from service.store.records import utcnow

WHY = "A score the clinic sends is complete; there is no preliminary score."
#: assessment's version as shipped: the tests change from it, whatever it is now
SHIPPED = re.search(r"^version: (\S+)$", (folder() / "assessment.yaml").read_text(encoding="utf-8"), re.M)[1]  # type: ignore[index]
NEXT = "99.0.0"


def _copy(tmp_path: Path, name: str, why: str = WHY, version: str = SHIPPED) -> Path:
    """The shipped mappings, with assessment's first rule's reason and the file version changed."""
    target = tmp_path / name
    shutil.copytree(folder(), target)
    path = target / "assessment.yaml"
    text = path.read_text(encoding="utf-8")
    assert WHY in text
    path.write_text(text.replace(WHY, why).replace(f"version: {SHIPPED}", f"version: {version}", 1), encoding="utf-8")
    return target


def _engine(app: Flask) -> Engine:
    engine: Engine = app.extensions["kfhir"].engine
    return engine


@pytest.mark.both_backends  # a unique constraint settles a race
def test_each_version_is_recorded_once_when_first_seen_without_git(app: Flask, tmp_path: Path) -> None:
    first, second = _copy(tmp_path, "v1"), _copy(tmp_path, "v2", why="Scores arrive final.", version=NEXT)
    engine = _engine(app)

    assert history.record_current(engine, first) == 0  # create_app recorded the shipped files already
    assert history.record_current(engine, second) == 1  # only assessment changed
    assert history.git_versions(second, "assessment") == []  # not a checkout: the database is the history

    found = history.versions(engine, "assessment", second)
    assert [v.version for v in found[:2]] == [NEXT, SHIPPED] and found[0].current and not found[1].current
    changes = history.compare(found[1], found[0])
    assert [(c.kind, c.detail) for c in changes] == [
        ("version", f"{SHIPPED} → {NEXT}"),
        ("changed", f"why: {WHY!r} → 'Scores arrive final.'")]


def test_a_version_that_no_longer_loads_is_a_clear_error(app: Flask) -> None:
    broken = history.Version("assessment", "ab" * 32, "9.9.9", utcnow(), "test", "kind: assessment\n", "")
    with pytest.raises(history.HistoryError, match="does not load"):
        history.load(broken)
    with pytest.raises(history.UnknownVersion):
        history.find([broken], "cd")


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.org", *args],
                   check=True, capture_output=True, timeout=30)


def test_a_git_checkout_gives_every_committed_version(app: Flask, tmp_path: Path) -> None:
    repo = tmp_path / "clone"
    repo.mkdir()
    _git(repo, "init", "-q")
    shutil.copytree(_copy(tmp_path, "a"), repo / "mappings")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "first mappings")
    (repo / "mappings" / "assessment.yaml").write_text(
        (repo / "mappings" / "assessment.yaml").read_text().replace(WHY, "Final."), encoding="utf-8")
    _git(repo, "commit", "-q", "-am", "shorter reason")

    committed = history.git_versions(repo / "mappings", "assessment")

    assert [v.origin.split(":")[1].strip() for v in committed] == ["shorter reason", "first mappings"]
    assert history.compare(committed[1], committed[0])[0].detail == f"why: {WHY!r} → 'Final.'"


def _record_old(app: Flask) -> str:
    """A version as if an older release of the service had run: assessment's first reason differs."""
    text = (folder() / "assessment.yaml").read_text(encoding="utf-8").replace(WHY, "Old reason.")
    people = (folder() / "people.yaml").read_text(encoding="utf-8")
    key = history.digest(text, people)
    with session(_engine(app), write=True) as s:
        s.add(history.MappingVersionRow(kind="assessment", digest=key, version="0.9.0", spec_text=text,
                                        people_text=people, first_seen_at=utcnow().replace(year=2020)))
    return key[:12]


def test_the_history_page_lists_versions_and_diffs_two(admin: FlaskClient, app: Flask) -> None:
    old = _record_old(app)
    current = history.versions(_engine(app), "assessment")[0]
    assert current.current

    page = admin.get(f"/admin/mappings/assessment/history?from={old}&to={current.short}").get_data(as_text=True)

    assert f"<code>{old}</code>" in page and "running now" in page
    assert '<tr class="change-changed"><th scope="row">rule changed</th>' in page
    assert "why: &#39;Old reason.&#39; →" in page
    assert 'href="/admin/mappings/assessment/history"' in admin.get("/admin/mappings/assessment").get_data(as_text=True)


def test_the_history_page_refuses_unknown_and_half_chosen_versions(admin: FlaskClient, app: Flask) -> None:
    old = _record_old(app)

    assert admin.get("/admin/mappings/assessment/history?from=ffffffffffff&to=" + old).status_code == 404
    response = admin.get(f"/admin/mappings/assessment/history?from={old}")
    assert response.status_code == 400 and "Choose two versions" in response.get_data(as_text=True)
    assert admin.get("/admin/mappings/banana/history").status_code == 404


def test_the_history_page_needs_sign_in(client: FlaskClient) -> None:
    response = client.get("/admin/mappings/assessment/history")

    assert response.status_code == 302 and "/admin/sign-in" in response.headers["Location"]
