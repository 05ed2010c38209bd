"""A drop fault on an ordinary JSON answer: the request is carried out, the answer is lost."""

from __future__ import annotations

import openstack
import pytest
from keystoneauth1 import exceptions as ksa_exc

from tests.sim.conftest import Admin


def test_dropped_answer_after_a_create(target: openstack.connection.Connection,
                                       admin_api: dict[str, Admin]) -> None:
    admin_api["target"].add_fault(match="POST /network/*", times=1, drop_after_bytes=0)
    with pytest.raises(ksa_exc.ConnectionError):
        target.network.post("/networks", json={"network": {"name": "answer-lost"}})
    names = [n["name"] for n in target.network.get("/networks").json()["networks"]]
    assert names.count("answer-lost") == 1
    # The next request on a new connection is answered normally.
    created = target.network.post("/networks", json={"network": {"name": "answered"}})
    assert created.status_code == 201
