"""A SQLite gallery as a fleet kiosk's replica (edge.gallery.sqlite_replica), without a server: its outbox holds
the changes made at the kiosk only once it belongs to a fleet, a batch of the server's changes is applied whole or
not at all, erasures win over changes waiting to be sent, and renaming and suspending work for any gallery."""
import numpy as np
import pytest

from edge.base.errors import UserError
from edge.gallery.sqlite import SqliteGallery
from edge.gallery.sqlite_replica import Person, SqliteReplica
from edge.gallery.store import AlreadyEnrolled, EmbeddingKey

pytestmark = pytest.mark.unit
KEY = EmbeddingKey("model", "space", "onnx:fp32")


def unit(seed: int, count: int = 1) -> np.ndarray:
    vectors = np.random.default_rng(seed).normal(size=(count, 8)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def outbox(replica: SqliteReplica) -> list[tuple[str, dict]]:
    return [(change.kind, change.detail) for change in replica.pending()]


def test_a_kiosks_own_gallery_keeps_no_outbox_and_renames_and_suspends(tmp_path):
    gallery = SqliteGallery(tmp_path / "g.db", create=True)
    gallery.people.enroll("ann", unit(1), KEY, ["a.png"])
    gallery.people.enroll("bob", unit(2), KEY, ["b.png"])
    gallery.events.log([{"identity": "ann", "outcome": "named"}])
    gallery.people.rename("ann", "anne")
    assert [e["identity"] for e in SqliteReplica(gallery).unsent_events()] == ["anne"]    # decisions follow the name
    with pytest.raises(AlreadyEnrolled):
        gallery.people.rename("anne", "bob")
    gallery.people.suspend("bob")
    with pytest.raises(UserError, match="'cid' is not enrolled"):
        gallery.people.suspend("cid")
    templates = gallery.people.templates(KEY)
    assert templates.names == ["anne", "bob"] and templates.suspended == {"bob"}
    assert SqliteReplica(gallery).pending() == []               # no fleet: nothing waits to be sent
    gallery.close()


def test_joining_a_fleet_sends_the_people_already_enrolled_and_journals_every_change(tmp_path):
    gallery = SqliteGallery(tmp_path / "g.db", create=True)
    gallery.people.enroll("ann", unit(1), KEY, ["a.png"])
    replica = SqliteReplica(gallery)
    assert replica.attach("door-1") == 1 and replica.attach("door-1") == 0
    with pytest.raises(UserError, match="replica of kiosk 'door-1', not 'door-2'"):
        replica.attach("door-2")
    gallery.people.enroll("bob", unit(2), KEY, ["b.png"])
    gallery.people.rename("bob", "rob")
    gallery.people.suspend("ann")
    gallery.people.remove("rob")
    assert outbox(replica) == [("enrol", {}), ("enrol", {}), ("rename", {"name": "rob"}),
                               ("suspend", {"suspended": True}), ("erase", {})]
    ann = replica.person(replica.pending()[0].fleet_id)
    assert ann.name == "ann" and ann.suspended and len(ann.templates) == 1
    np.testing.assert_allclose(ann.templates[0]["vector"], unit(1)[0])
    seqs = [change.seq for change in replica.pending()]
    replica.acknowledge(seqs[0], ann.fleet_id, "ann (door-1)")     # the server renamed a possible duplicate
    assert [name for name, _ in gallery.people.identities()] == ["ann (door-1)"]
    gallery.close()


def test_a_batch_of_the_servers_changes_is_applied_whole_or_not_at_all(tmp_path):
    gallery = SqliteGallery(tmp_path / "g.db", create=True)
    replica = SqliteReplica(gallery)
    replica.attach("door-1")
    gallery.people.enroll("ann", unit(1), KEY, ["a.png"])             # made here, not yet sent
    template = {"fleet_id": "t1", "vector": unit(3)[0], "model": "model", "space": "space", "producer": "onnx:fp32",
                "source": "desk"}
    with pytest.raises(UserError, match="clashes with a person enrolled here and not yet sent"):
        replica.apply(7, {"p1": Person("p1", "cid", templates=[template]),
                          "p2": Person("p2", "ann", templates=[{**template, "fleet_id": "t2"}])})
    assert replica.applied() == 0 and [n for n, _ in gallery.people.identities()] == ["ann"]
    replica.apply(7, {"p1": Person("p1", "cid", "yes", True, [template])})
    assert replica.applied() == 7 and replica.synced_at() is not None
    templates = gallery.people.templates(KEY)
    assert templates.names == ["ann", "cid"] and templates.suspended == {"cid"}
    np.testing.assert_allclose(templates.matrix[1], unit(3)[0], atol=1e-6)
    replica.apply(8, {"p1": None})                                    # erased on the server since
    assert [n for n, _ in gallery.people.identities()] == ["ann"] and replica.applied() == 8
    gallery.close()


def test_an_erasure_wins_over_changes_waiting_to_be_sent_and_takes_the_logged_decisions(tmp_path):
    gallery = SqliteGallery(tmp_path / "g.db", create=True)
    replica = SqliteReplica(gallery)
    replica.attach("door-1")
    replica.apply(1, {"p1": Person("p1", "ann", templates=[{"fleet_id": "t1", "vector": unit(1)[0], "model": "model",
                                                              "space": None, "producer": None, "source": None}])})
    gallery.people.rename("ann", "anne")                              # waits to be sent
    gallery.events.log([{"identity": "anne", "outcome": "named"}, {"identity": None, "outcome": "unknown"}])
    assert replica.erase(["p1", "never-here"]) == 1
    assert gallery.people.identities() == [] and replica.pending() == []
    assert [e["outcome"] for e in replica.unsent_events()] == ["unknown"]
    replica.events_sent(replica.unsent_events()[-1]["id"])
    assert replica.unsent_events() == []
    gallery.close()


def test_kept_visitors_wait_to_be_sent_opened_and_their_forgetting_is_journaled(tmp_path):
    gallery = SqliteGallery(tmp_path / "g.db", create=True)
    replica = SqliteReplica(gallery)
    replica.attach("door-1")
    first = gallery.visitors.add(unit(1, 2), b"jpeg", KEY, {"outcome": "unknown", "liveness": {"verdict": "live"}})
    second = gallery.visitors.add(unit(2), None, KEY, {"outcome": "unknown"})
    sent = replica.unsent_visitors()
    assert [v["id"] for v in sent] == [first, second] and sent[0]["crop"] == b"jpeg" and sent[1]["crop"] is None
    np.testing.assert_allclose(sent[0]["embeddings"], unit(1, 2))
    replica.visitors_sent(first)
    assert [v["id"] for v in replica.unsent_visitors()] == [second]
    gallery.visitors.forget(second)
    assert outbox(replica) == [("visitor_gone", {})] and replica.pending()[0].fleet_id == str(second)
    replica.apply(3, {}, visitors_gone=[first])                       # named or forgotten at the desk
    assert gallery.visitors.kept() == [] and replica.applied() == 3
    gallery.close()
