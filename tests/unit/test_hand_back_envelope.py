"""A reclaimed delivery handed back at shutdown keeps its crash count."""

from taskchan.envelope import Envelope, decode
from taskchan.stores.base import Delivery
from taskchan.worker.handback import with_lost_attempts

CH = "taskchan.t.record"


def test_reclaimed_delivery_carries_its_lost_attempts_into_the_envelope():
    envelope = Envelope.new(CH, {"n": 1})
    envelope.attempts_before = 1
    envelope.traceback = "Traceback: the first attempt's"
    delivery = Delivery(CH, "1-0", envelope.encode(), deliveries=2, reclaimed=True)

    handed_back = decode(with_lost_attempts(delivery), CH)

    # one failed attempt before, two deliveries lost with their workers since
    assert handed_back.attempts_before == 3
    assert handed_back.errors[-1]["type"] == "taskchan.WorkerLost"
    assert handed_back.traceback == "Traceback: the first attempt's"
    assert (handed_back.id, handed_back.content) == (envelope.id, envelope.content)


def test_a_malformed_delivery_is_handed_back_as_it_was():
    delivery = Delivery(CH, "1-0", "not json", deliveries=1, reclaimed=True)

    assert with_lost_attempts(delivery) == "not json"
