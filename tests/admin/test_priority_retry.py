"""A dead letter keeps its message's priority, and a retry from the admin sends it again at it."""

from __future__ import annotations

import pytest

import taskchan
from taskchan.models import FailedMessage
from tests.admin.conftest import CHANGELIST, make_failed
from tests.conftest import KEYS
from tests.contract.conftest import run_burst

CH = "taskchan.t.record"


def test_a_message_dead_lettered_by_a_worker_records_its_priority(
    use_redis_layer, transactional_db
):
    taskchan.send("taskchan.c.poison", {"n": 1}, max_attempts=1, priority=-30)
    taskchan.send("taskchan.c.poison", {"n": 2}, max_attempts=1)

    run_burst(["taskchan.c.poison"])

    rows = FailedMessage.objects.filter(channel="taskchan.c.poison")
    assert sorted((r.content["n"], r.priority) for r in rows) == [(1, -30), (2, 0)]


@pytest.mark.django_db
def test_retry_from_the_admin_sends_again_at_the_rows_priority(
    client_with, use_redis_layer, redis_client
):
    one = make_failed(channel=CH, content={"n": 1}, priority=40)
    many = [make_failed(n, channel=CH, content={"n": n}, priority=-5) for n in (2, 3)]
    plain = make_failed(4, channel=CH, content={"n": 4})
    client = client_with("view", "retry")

    assert client.post(f"{CHANGELIST}{one.pk}/retry/").status_code == 302
    selected = [r.pk for r in [*many, plain]]
    response = client.post(
        CHANGELIST, {"action": "retry_selected", "_selected_action": selected, "index": 0}
    )
    assert response.status_code == 302

    assert redis_client.xlen(KEYS.lane(CH, 40)) == 1
    assert redis_client.xlen(KEYS.lane(CH, -5)) == 2
    assert redis_client.xlen(KEYS.stream(CH)) == 1
    assert redis_client.zrange(KEYS.levels(CH), 0, -1) == ["-5", "40"]
