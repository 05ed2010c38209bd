"""Keystone project tags on the modern profile (Queens and later), through openstacksdk."""

from __future__ import annotations

import openstack
import pytest
from openstack import exceptions

from migrator.sim.server import SimServer


def test_project_tags_create_filter_and_edit(target: openstack.connection.Connection) -> None:
    a = target.identity.create_project(name="tags-a", domain_id="default",
                                       tags=["migrator-src-1", "blue"])
    b = target.identity.create_project(name="tags-b", domain_id="default", tags=["blue"])
    assert sorted(a.tags) == ["blue", "migrator-src-1"]
    assert [p.id for p in target.identity.projects(tags="migrator-src-1")] == [a.id]
    assert {p.id for p in target.identity.projects(tags="blue")} >= {a.id, b.id}
    assert [p.id for p in target.identity.projects(tags="blue,migrator-src-1")] == [a.id]
    any_ids = {p.id for p in target.identity.projects(**{"tags-any": "migrator-src-1,nope"})}
    assert any_ids == {a.id}
    not_ids = {p.id for p in target.identity.projects(**{"not-tags": "blue"})}
    assert a.id not in not_ids and b.id not in not_ids

    b.add_tag(target.identity, "green")
    assert target.identity.get_project(b.id).tags == ["blue", "green"]
    assert b.check_tag(target.identity, "green") is not None
    b.remove_tag(target.identity, "blue")
    assert target.identity.get_project(b.id).tags == ["green"]
    b.set_tags(target.identity, ["x", "y"])
    assert target.identity.get_project(b.id).tags == ["x", "y"]
    b.remove_all_tags(target.identity)
    assert target.identity.get_project(b.id).tags == []
    with pytest.raises(exceptions.NotFoundException):
        b.check_tag(target.identity, "x")


def test_project_tags_are_validated(target: openstack.connection.Connection) -> None:
    with pytest.raises(exceptions.BadRequestException):
        target.identity.create_project(name="tags-bad", domain_id="default", tags=["a/b"])


def test_liberty_has_no_project_tags(sim: SimServer,
                                     legacy: openstack.connection.Connection) -> None:
    response = legacy.identity.post(
        "/projects", json={"project": {"name": "tags-old", "tags": ["x"]}})
    assert response.status_code == 400
    p = legacy.identity.create_project(name="tags-old2", domain_id="default")
    assert legacy.identity.get(f"/projects/{p.id}/tags").status_code == 404
