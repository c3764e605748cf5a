"""taskchan channels sharded over several Redis hosts, with real redis-server processes.

The layer's ``hosts`` lists two (or three) Redis servers; each channel lives on
its home host (``taskchan.stores.sharded``).  These tests look at each server
directly: where ``send()`` stores a message, that one ``runworker`` serves
every host (through a SIGKILL), that a changed hosts list strands nothing,
that a host that is down holds back only its own channels, and that the
readers of the whole (stats, the worker registry, ``taskchan_status``, the
admin's bulk retry) see every host.
"""

from __future__ import annotations

import asyncio
import io
import json
import signal
import time
from collections import Counter

import pytest
import redis as redis_lib
from channels.layers import get_channel_layer
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command

import taskchan
from taskchan.exceptions import StoreUnavailable
from taskchan.models import FailedMessage
from taskchan.resend import resend_many
from taskchan.stores.configured import get_store
from taskchan.stores.hosts import store_hosts
from taskchan.stores.keys import Keys
from taskchan.stores.redis import RedisStore
from taskchan.stores.sharded import ShardedStore, shard_index
from tests.conftest import done_records, layer_settings, on_store, wait_for
from tests.contract.conftest import run_burst
from tests.jobs import SHARDED_CHANNELS

pytestmark = pytest.mark.django_db(transaction=True)

KEYS = Keys("taskchan")


def homes(channels, shards=2) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for channel in channels:
        out.setdefault(shard_index(channel, shards), []).append(channel)
    return out


def clients(urls):
    return [redis_lib.Redis.from_url(url, decode_responses=True) for url in urls]


def sharded_worker(manage, redis_url, urls, *args):
    return manage(
        ["runworker", "taskchan.sh.*", *args], redis_url=redis_url,
        DJANGO_SETTINGS_MODULE="tests.sharded_settings", TASKCHAN_SHARD_URLS=",".join(urls),
    )


# -- the hash ---------------------------------------------------------------------


def test_channel_homes_are_pinned():
    # Every producer and worker must agree on a channel's home, across
    # processes, machines and releases: a change here would move channels.
    assert homes(SHARDED_CHANNELS) == {
        0: ["taskchan.sh.d", "taskchan.sh.f", "taskchan.sh.h"],
        1: ["taskchan.sh.a", "taskchan.sh.b", "taskchan.sh.c", "taskchan.sh.e", "taskchan.sh.g"],
    }
    assert [shard_index(c, 3) for c in SHARDED_CHANNELS] == [2, 1, 1, 0, 1, 2, 2, 0]
    assert [shard_index("taskchan.thumbnails", n) for n in (1, 2, 3)] == [0, 0, 0]


def test_channels_spread_evenly_and_a_new_host_takes_only_its_share():
    names = [f"taskchan.load.{i}" for i in range(12_000)]
    spread = Counter(shard_index(n, 3) for n in names)
    assert all(0.30 < spread[i] / len(names) < 0.37 for i in range(3)), spread

    moved = [n for n in names if shard_index(n, 3) != shard_index(n, 4)]
    # Appending a fourth host moves about a quarter of the channels, all to it.
    assert 0.22 < len(moved) / len(names) < 0.28
    assert {shard_index(n, 4) for n in moved} == {3}


# -- configuration ------------------------------------------------------------------


def test_hosts_choose_the_store(settings, shard_urls):
    a, b = shard_urls
    settings.CHANNEL_LAYERS = layer_settings(a, b)
    assert isinstance(get_store(), ShardedStore)
    assert get_store() is get_channel_layer().taskchan_store

    settings.CHANNEL_LAYERS = layer_settings(a, b, taskchan_host=b)
    store = get_store()
    assert isinstance(store, RedisStore) and store.url == b

    settings.CHANNEL_LAYERS = layer_settings(a, taskchan_hosts=[b, a])
    store = get_store()
    assert isinstance(store, ShardedStore) and [s.url for s in store.shards] == [b, a]


@pytest.mark.parametrize(
    "config, error",
    [
        ({"hosts": ["redis://h:6379/0"], "taskchan_hosts": ["redis://a/0", "redis://a/0"]}, "twice"),
        ({"taskchan_host": "redis://a/0", "taskchan_hosts": ["redis://b/0"]}, "both"),
        ({"taskchan_hosts": "redis://a/0,redis://b/0"}, "must be a non-empty list"),
        ({"hosts": ["redis://h:6379/0"], "taskchan_hosts": []}, "must be a non-empty list"),
    ],
)
def test_a_bad_hosts_list_is_refused_before_anything_is_stored(config, error):
    with pytest.raises(ImproperlyConfigured, match=error):
        store_hosts(config.get("hosts"), config.get("taskchan_host"), config.get("taskchan_hosts"))


def test_a_server_twice_in_hosts_is_one_shard_as_channels_redis_accepts_it():
    a, b = "redis://a:6379/0", "redis://b:6379/0"
    assert store_hosts([a, b, a]) == [a, b]
    assert store_hosts([("h", 6379), ("h", 6379)]) == [("h", 6379)]


# -- producing ---------------------------------------------------------------------


def test_send_stores_each_channel_on_its_home_host_only(use_sharded_layer):
    servers = clients(use_sharded_layer)
    for channel in SHARDED_CHANNELS:
        taskchan.send(channel, {"n": 1})
        taskchan.send(channel, {"n": 2}, delay=60)

    for index, server in enumerate(servers):
        mine = homes(SHARDED_CHANNELS)[index]
        assert sorted(server.smembers(KEYS.channels)) == mine
        for channel in SHARDED_CHANNELS:
            expected = 1 if channel in mine else 0
            assert (server.xlen(KEYS.stream(channel)), server.zcard(KEYS.scheduled(channel))) == (expected, expected)


def test_an_idempotency_key_is_kept_on_the_channels_home(use_sharded_layer):
    servers = clients(use_sharded_layer)
    channel = "taskchan.sh.a"  # home: the second host
    first = taskchan.send(channel, {"n": 1}, idempotency_key="order-7")
    again = taskchan.send(channel, {"n": 1}, idempotency_key="order-7")

    assert again == first
    assert servers[1].get(KEYS.idempotency(channel, "order-7")) == first
    assert servers[0].keys("taskchan:i:*") == []


def test_bulk_retry_sends_each_row_to_its_channels_home(use_sharded_layer):
    servers = clients(use_sharded_layer)
    rows = [
        FailedMessage.objects.create(
            message_id=f"{i:032x}", channel=channel, content={"n": i}, reason=FailedMessage.Reason.EXHAUSTED,
        )
        for i, channel in enumerate(SHARDED_CHANNELS)
    ]

    result = resend_many(FailedMessage.objects.filter(pk__in=[r.pk for r in rows]))

    assert len(result.sent) == len(SHARDED_CHANNELS) and not result.skipped
    for index, server in enumerate(servers):
        for channel in SHARDED_CHANNELS:
            on_home = channel in homes(SHARDED_CHANNELS)[index]
            assert server.xlen(KEYS.stream(channel)) == (1 if on_home else 0), (index, channel)


def test_replies_to_process_specific_channels_reach_their_reader(use_sharded_layer):
    # channels_redis's own channels on two hosts: what a websocket consumer's
    # channel_name gets must arrive where receive() reads it.
    async def main():
        layer = get_channel_layer()
        names = [await layer.new_channel() for _ in range(20)]
        for i, name in enumerate(names):
            await layer.send(name, {"type": "reply", "n": i})
        got = [await asyncio.wait_for(layer.receive(name), 5) for name in names]
        await layer.flush()
        return got

    assert [m["n"] for m in asyncio.run(main())] == list(range(20))


# -- working ------------------------------------------------------------------------


def test_one_runworker_serves_every_host_through_a_sigkill(use_sharded_layer, manage, redis_url):
    urls = use_sharded_layer
    servers = clients(urls)
    sent = [taskchan.send(channel, {"ms": 5, "i": i}) for i in range(40) for channel in SHARDED_CHANNELS]
    assert all(server.dbsize() for server in servers)  # both hosts hold work

    first = sharded_worker(manage, redis_url, urls, "--concurrency", "4")
    wait_for(lambda: len(done_records(servers[0])) >= 60, timeout=60, message="the first worker to run some jobs")
    # Registered once in the store's list, on both hosts' registries.
    workers = on_store(get_store(), lambda: get_store().workers())
    assert [w["pid"] for w in workers] == [first.pid]
    assert all(server.zcard(KEYS.workers) == 1 for server in servers)
    first.kill()

    second = sharded_worker(manage, redis_url, urls, "--concurrency", "4")
    # The first worker's leases lapse after the consumers' 2 s visibility timeout.
    wait_for(lambda: {r[0] for r in done_records(servers[0])} >= set(sent), timeout=90,
             message="every message to run")
    # A job the first worker ran but could not ack is run again by the second
    # once its lease lapses: wait for that too, or a SIGTERM now would hand it back.
    wait_for(lambda: not any(server.xlen(KEYS.stream(c)) for server in servers for c in SHARDED_CHANNELS),
             timeout=30, message="every stream empty")
    second.signal(signal.SIGTERM)
    assert second.wait(30) == 0, second.output()

    runs = Counter(r[0] for r in done_records(servers[0]))
    assert set(runs) == set(sent)
    # At least once: only what the killed worker held may have run twice: its
    # concurrency (4) + prefetch (16), plus up to one per channel, since Redis applies
    # a read's COUNT per stream and this worker reads eight (the soak's bound too).
    # CI saw 22 once, past the 20 this asserted before.
    assert sum(runs.values()) - len(sent) <= 4 + 16 + len(SHARDED_CHANNELS)
    assert {r[2] for r in done_records(servers[0])} <= {first.pid, second.pid}
    for server in servers:
        for channel in SHARDED_CHANNELS:
            assert server.xlen(KEYS.stream(channel)) == 0


def test_a_changed_hosts_list_strands_nothing_on_the_old_home(settings, shard_urls):
    a, b = shard_urls
    servers = clients(shard_urls)
    moving = homes(SHARDED_CHANNELS)[1]  # home b once b is listed
    # Before: one Redis holds every channel, with queued and delayed messages.
    settings.CHANNEL_LAYERS = layer_settings(a)
    before = [taskchan.send(channel, {"when": "before"}) for channel in moving]
    before += [taskchan.send(channel, {"when": "before, delayed"}, delay=1) for channel in moving]
    # After: b is added; new messages for the moving channels go to b.
    settings.CHANNEL_LAYERS = layer_settings(a, b)
    after = [taskchan.send(channel, {"when": "after"}) for channel in moving]
    assert all(servers[0].xlen(KEYS.stream(c)) == 1 and servers[1].xlen(KEYS.stream(c)) == 1 for c in moving)
    # The status adds the two hosts up.
    stats = {s.channel: s for s in on_store(get_store(), lambda: get_store().stats(moving))}
    assert {c: (s.queued, s.scheduled) for c, s in stats.items()} == dict.fromkeys(moving, (2, 1))

    run_burst(moving, store=get_store(), timeout=30)

    assert {r[0] for r in done_records(servers[0])} == set(before + after)
    for server in servers:
        for channel in moving:
            assert (server.xlen(KEYS.stream(channel)), server.zcard(KEYS.scheduled(channel))) == (0, 0)


def test_a_running_worker_finds_what_an_old_producer_sends_to_the_old_home(
    settings, shard_urls, manage, redis_url, redis_client
):
    # A rolling deploy: workers already run with hosts [a, b] while a producer
    # still runs with [a].  What it sends to a channel whose home is now b
    # lands on a, on a host the worker did not read that channel on.
    a, b = shard_urls
    channel = homes(SHARDED_CHANNELS)[1][0]
    worker = sharded_worker(manage, redis_url, shard_urls)
    settings.CHANNEL_LAYERS = layer_settings(a, b)
    warm = taskchan.send(channel, {})
    wait_for(lambda: warm in {r[0] for r in done_records(redis_client)}, timeout=30, message="the worker to run")

    settings.CHANNEL_LAYERS = layer_settings(a)
    late = taskchan.send(channel, {"from": "old producer"})
    assert redis_client.xlen(KEYS.stream(channel)) == 1

    # Picked up at the worker's next housekeeping (every 5 s).
    wait_for(lambda: late in {r[0] for r in done_records(redis_client)}, timeout=20,
             message="the worker to find the channel on its old home")
    worker.signal(signal.SIGTERM)
    assert worker.wait(30) == 0, worker.output()


def test_a_host_that_is_down_holds_back_only_its_own_channels(
    redis_server_factory, settings, manage, redis_url, redis_client
):
    first, second = redis_server_factory(), redis_server_factory(appendonly=True)
    urls = [first.url, second.url]
    settings.CHANNEL_LAYERS = layer_settings(*urls)
    on_first, on_second = homes(SHARDED_CHANNELS)[0], homes(SHARDED_CHANNELS)[1]
    worker = sharded_worker(manage, redis_url, urls, "--concurrency", "2")
    warm = [taskchan.send(channel, {}) for channel in SHARDED_CHANNELS]
    wait_for(lambda: {r[0] for r in done_records(redis_client)} >= set(warm), timeout=30,
             message="a first message on every channel")

    second.kill()
    with pytest.raises(StoreUnavailable):
        taskchan.send(on_second[0], {})  # nothing stored, the caller is told
    during = [taskchan.send(on_first[i % len(on_first)], {"i": i}) for i in range(30)]
    wait_for(lambda: {r[0] for r in done_records(redis_client)} >= set(during), timeout=30,
             message="the first host's channels to be served while the second is down")
    # As a health check, the status says the store cannot be read in full.
    with pytest.raises(SystemExit) as status:
        call_command("taskchan_status", stdout=io.StringIO(), stderr=io.StringIO())
    assert status.value.code == 2

    second.start()
    settings.TASKCHAN_SEND_RETRY_SECONDS = 10.0
    later = [taskchan.send(channel, {"i": i}) for i, channel in enumerate(on_second * 4)]
    wait_for(lambda: {r[0] for r in done_records(redis_client)} >= set(later), timeout=60,
             message="the second host's channels to be served again once it is back")
    assert worker.running
    worker.signal(signal.SIGTERM)
    assert worker.wait(30) == 0, worker.output()
    # One line when the host stopped answering and one when it answered again (outage.py).
    assert f"Redis <RedisStore redis://127.0.0.1:{second.port}/0 prefix='taskchan'> does not answer" in worker.output()
    assert f"Redis <RedisStore redis://127.0.0.1:{second.port}/0 prefix='taskchan'> answers again" in worker.output()


def test_taskchan_status_reads_every_host(use_sharded_layer, manage, redis_url):
    urls = use_sharded_layer
    for channel in SHARDED_CHANNELS:
        for _ in range(3):
            taskchan.send(channel, {})
    out = io.StringIO()
    with pytest.raises(SystemExit) as not_live:  # messages queued and no worker serves them
        call_command("taskchan_status", "--json", "taskchan.sh.*", stdout=out)
    assert not_live.value.code == 2
    report = json.loads(out.getvalue())
    queued = {row["channel"]: row["queued"] for row in report["channels"]}
    assert queued == dict.fromkeys(SHARDED_CHANNELS, 3)

    proc = sharded_worker(manage, redis_url, urls, "--burst")
    assert proc.wait(60) == 0, proc.output()
    time.sleep(0.1)
    out = io.StringIO()
    call_command("taskchan_status", "--json", "taskchan.sh.*", stdout=out)
    rows = {row["channel"]: row for row in json.loads(out.getvalue())["channels"]}
    assert {c: (r["queued"], r["processed_last_minute"]) for c, r in rows.items()} == dict.fromkeys(SHARDED_CHANNELS, (0, 3))


def test_a_frozen_host_does_not_let_leases_on_the_other_lapse(
    redis_server_factory, settings, manage, redis_url, redis_client
):
    # Each host's upkeep (lease renewal included) runs on its own: a host
    # that answers nothing must not hold back the renewal of leases on another.
    first, second = redis_server_factory(), redis_server_factory()
    urls = [first.url, second.url]
    settings.CHANNEL_LAYERS = layer_settings(*urls)
    channel = homes(SHARDED_CHANNELS)[0][0]
    # The worker that takes the job reads both hosts; four seconds of work on a
    # channel whose visibility timeout is 2 s runs once only if its lease is
    # renewed all along.
    both = sharded_worker(manage, redis_url, urls, "--concurrency", "2")
    message_id = taskchan.send(channel, {"ms": 4000})
    wait_for(lambda: done_records(redis_client, "t:started"), timeout=30, message="the job to start")
    # Another worker reads only the first host, so the frozen one does not
    # slow it down: it would reclaim the job as soon as its lease lapsed.
    first_only = manage(
        ["runworker", channel], redis_url=redis_url,
        DJANGO_SETTINGS_MODULE="tests.sharded_settings", TASKCHAN_SHARD_URLS=",".join(urls),
    )
    wait_for(lambda: "serving" in first_only.output(), timeout=30, message="the second worker to start")
    workers = [both, first_only]

    second.proc.send_signal(signal.SIGSTOP)
    try:
        wait_for(lambda: done_records(redis_client), timeout=30, message="the job to finish")
        time.sleep(2.5)  # a lapsed lease would be reclaimed and started again by now
    finally:
        second.proc.send_signal(signal.SIGCONT)

    assert [r[0] for r in done_records(redis_client, "t:started")] == [message_id]
    assert [r[0] for r in done_records(redis_client)] == [message_id]
    for worker in workers:
        assert worker.running, worker.output()


def test_sigterm_exits_though_a_host_with_acks_to_send_is_down(
    redis_server_factory, settings, manage, redis_url, redis_client
):
    first, second = redis_server_factory(), redis_server_factory()
    urls = [first.url, second.url]
    settings.CHANNEL_LAYERS = layer_settings(*urls)
    worker = sharded_worker(manage, redis_url, urls)
    message_id = taskchan.send(homes(SHARDED_CHANNELS)[1][0], {"ms": 1500})
    wait_for(lambda: done_records(redis_client, "t:started"), timeout=30, message="the job to start")

    second.kill()  # the job's ack has nowhere to go
    wait_for(lambda: done_records(redis_client), timeout=30, message="the job to finish")
    worker.signal(signal.SIGTERM)

    # It tries the ack for a while, then exits; the job may run again once the
    # host is back (its lease lapses), which is at least once, never lost.
    assert worker.wait(40) == 0, worker.output()
    assert "giving up on 1 ack(s) at shutdown" in worker.output()
    assert [r[0] for r in done_records(redis_client)] == [message_id]


def test_readers_of_the_whole_show_the_hosts_that_answer(redis_server_factory, settings, client):
    # One host of two is down: the overview, the status and the metrics show
    # the other's channels and name the missing host, instead of going blank.
    from prometheus_client.parser import text_string_to_metric_families

    from taskchan.admin import overview_data

    first = redis_server_factory()
    second = redis_server_factory(password="s3cret")  # noqa: S106 - a throw-away test server
    settings.CHANNEL_LAYERS = layer_settings(first.url, second.url)
    on_first, on_second = homes(SHARDED_CHANNELS)[0], homes(SHARDED_CHANNELS)[1]
    for channel in SHARDED_CHANNELS:
        taskchan.send(channel, {})
        taskchan.send(channel, {})
    # A lease on the first host that lapses (its worker is gone): still counted.
    store = get_store()
    on_store(store, lambda: store.home(on_first[0]).prepare([on_first[0]]))
    on_store(store, lambda: store.home(on_first[0]).fetch([on_first[0]], "gone", 1, 0))
    time.sleep(2.2)  # the consumers' visibility timeout is 2 s
    second.kill()
    missing = f"127.0.0.1:{second.port}"

    out = io.StringIO()
    with pytest.raises(SystemExit) as status:
        call_command("taskchan_status", "--json", "taskchan.sh.*", stdout=out)
    assert status.value.code == 2
    report = json.loads(out.getvalue())
    assert report["healthy"] is False
    assert [missing in u["store"] for u in report["unreachable"]] == [True]
    assert "s3cret" not in out.getvalue()
    rows = {row["channel"]: row for row in report["channels"]}
    # The second host's channels are left out, not shown as empty.
    assert set(rows) == set(on_first)
    assert {c: (r["queued"] + r["in_flight"], r["lapsed"]) for c, r in rows.items()} == {
        c: (2, 1 if c == on_first[0] else 0) for c in on_first
    }

    data = overview_data.collect()
    assert "Could not read 1 Redis host(s)" in data["error"] and missing in data["error"]
    assert "s3cret" not in data["error"]
    assert not {row["channel"] for row in data["channels"]} & set(on_second)
    overview = {row["channel"]: row["queued"] + row["in_flight"] for row in data["channels"]}
    assert {c: overview[c] for c in on_first} == dict.fromkeys(on_first, 2)

    response = client.get("/metrics")
    found = {
        (sample.name, sample.labels.get("channel", "")): sample.value
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
    }
    assert found[("taskchan_store_up", "")] == 0
    assert found[("taskchan_store_hosts_unreachable", "")] == 1
    assert all(found[("taskchan_queue_depth", channel)] + found[("taskchan_in_flight", channel)] == 2
               for channel in on_first)
    assert not any(("taskchan_queue_depth", channel) in found for channel in on_second)


def test_a_host_being_drained_is_read_but_never_sent_to(settings, shard_urls):
    a, b = shard_urls
    servers = clients(shard_urls)
    settings.CHANNEL_LAYERS = layer_settings(a, b)
    before = [taskchan.send(channel, {"when": "before"}) for channel in SHARDED_CHANNELS]
    on_b = homes(SHARDED_CHANNELS)[1]
    assert sum(servers[1].xlen(KEYS.stream(c)) for c in on_b) == len(on_b)

    # Taking b out: every channel is homed on a now, and b is only read.
    settings.CHANNEL_LAYERS = layer_settings(a, taskchan_drain_hosts=[b])
    store = get_store()
    assert isinstance(store, ShardedStore) and store.home(on_b[0]).url == a
    after = [taskchan.send(channel, {"when": "after"}) for channel in SHARDED_CHANNELS]
    assert sum(servers[1].xlen(KEYS.stream(c)) for c in on_b) == len(on_b)  # nothing new on b
    status = {s.channel: s.queued for s in on_store(store, lambda: store.stats(SHARDED_CHANNELS))}
    assert status == dict.fromkeys(SHARDED_CHANNELS, 2)

    run_burst(SHARDED_CHANNELS, store=store, timeout=30)

    assert {r[0] for r in done_records(servers[0])} == set(before + after)
    assert sum(server.xlen(KEYS.stream(c)) for server in servers for c in SHARDED_CHANNELS) == 0
