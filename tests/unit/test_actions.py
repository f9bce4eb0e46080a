"""Door actions fail closed, against real components: Debian's mosquitto broker (started here on a free port,
stopped and restarted mid-run), an HTTPS webhook receiver with a self-signed certificate that checks each
event's signature, and gpiozero's own mock pins."""
import datetime
import importlib.util
import ipaddress
import json
import os
import shutil
import socket
import ssl
import subprocess
import threading
import time
from http.server import HTTPServer
from pathlib import Path

import pytest

from edge.kiosk.actions import DoorActions, GpioAction, MqttAction, WebhookAction, read_webhook_secret
from edge.base.errors import UserError
from edge.kiosk.visits import VisitDecision

pytestmark = pytest.mark.unit
mqtt = pytest.importorskip("paho.mqtt.client")
RECEIVER = Path(__file__).resolve().parents[2] / "docs" / "webhook_receiver.py"
SECRET = b"a shared secret of enough bytes"


def decision(outcome="named", identity="ann", track=1, interrupted=""):
    made = VisitDecision(track, 10, outcome, identity if outcome == "named" else None, 0.97, identity, 2, "",
                         [0, 0, 1, 1], look_time_s=1.0)
    made.interrupted = interrupted
    return made


def wait_for(condition, timeout=15.0, what="the condition"):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ---- the door's rules --------------------------------------------------------------------------------------------

def test_only_a_named_uninterrupted_visit_of_a_healthy_kiosk_on_fresh_looks_opens_and_each_refusal_is_counted():
    door = DoorActions([], min_interval_s=60, max_frame_age_s=1.0)
    assert door.on_decision(decision("unknown"), True, "host", 0.1).why == "not named"
    assert door.on_decision(decision("undecided"), True, "host", 0.1).why == "not named"
    assert door.on_decision(decision(interrupted="the camera stopped"), True, "host", 0.1).why == "visit cut short"
    assert door.on_decision(decision(), False, "host", 0.1).why == "kiosk unhealthy"
    assert door.on_decision(decision(), True, "host", 1.0).why == "looks too old"
    assert door.on_decision(decision(), True, "host", float("inf")).why == "looks too old"
    assert door.on_decision(decision(), True, "host", 0.2).fired
    assert door.on_decision(decision(track=2), True, "host", 0.1).why == "rate limited"
    assert door.on_decision(decision(identity="bob"), True, "host", 0.1).fired
    assert {k: door.counts[k] for k in ("not named", "visit cut short", "kiosk unhealthy", "looks too old",
                                        "rate limited")} == {"not named": 2, "visit cut short": 1, "kiosk unhealthy": 1,
                                                             "looks too old": 2, "rate limited": 1}
    door.close()


class SlowAction:
    """An action that takes its time (a hung controller): events queued behind it outlive their ttl."""

    name = "slow"

    def __init__(self):
        self.fired, self.release = [], threading.Event()

    def fire(self, event):
        self.release.wait(10)
        self.fired.append(event["identity"])

    def close(self):
        pass


def test_an_event_that_waited_past_its_ttl_is_dropped_unsent_not_delivered_late():
    slow = SlowAction()
    door = DoorActions([slow], min_interval_s=0.001, ttl_s=0.2)
    assert door.on_decision(decision(identity="ann"), True, "host", 0.1).fired
    wait_for(lambda: door._queues[0].qsize() == 0, what="ann's event to start")
    assert door.on_decision(decision(identity="bob"), True, "host", 0.1).fired     # queued behind ann's
    time.sleep(0.3)
    slow.release.set()
    door.wait()
    assert slow.fired == ["ann"] and door.counts["slow expired"] == 1 and door.counts["slow ok"] == 1
    door.close()


def test_a_failing_action_is_counted_and_does_not_stop_the_others(pins):
    nothing_listens = WebhookAction(f"http://127.0.0.1:{free_port()}/door", SECRET, timeout_s=1.0)
    relay = GpioAction(17, open_s=0.05, pin_factory=pins)
    door = DoorActions([nothing_listens, relay], min_interval_s=0.001)
    assert door.on_decision(decision(), True, "host", 0.1).fired
    door.wait()
    assert door.counts["webhook failed"] == 1 and door.counts["gpio17 ok"] == 1
    assert [s.state for s in pins.pin(17).states][:2] == [False, True]          # the relay opened all the same
    door.close()


# ---- MQTT against mosquitto --------------------------------------------------------------------------------------

class Mosquitto:
    """Debian's mosquitto on 127.0.0.1 and a free port, stopped and started again on the same port."""

    def __init__(self, folder: Path):
        binary = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else "")
        if not binary:
            message = "mosquitto is not installed: apt-get install mosquitto (.ci/run installs it)"
            if os.environ.get("CI"):
                pytest.fail(message)
            pytest.skip(message)
        self.binary, self.port = binary, free_port()
        self.config = folder / "mosquitto.conf"
        self.config.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen([self.binary, "-c", str(self.config)], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)

        def listening():
            with socket.socket() as sock:
                return sock.connect_ex(("127.0.0.1", self.port)) == 0
        wait_for(listening, what="mosquitto to listen")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


@pytest.fixture
def broker(tmp_path):
    server = Mosquitto(tmp_path)
    server.start()
    yield server
    if server.process.poll() is None:
        server.stop()


class Subscriber:
    """A real MQTT v5 client that records what arrives: (topic, payload, retained, properties)."""

    def __init__(self, port: int, topics=("edge_face/#", "homeassistant/#"), client_id="", clean_start=True):
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        self.received, self.subscribed = [], threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        self.client.on_message = lambda c, u, m: self.received.append(
            (m.topic, json.loads(m.payload), m.retain, getattr(m.properties, "MessageExpiryInterval", None)))
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe([(t, 1) for t in topics])
        self.client.on_subscribe = lambda *args: self.subscribed.set()
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = 300            # kept by the broker while offline (when not clean)
        self.client.connect("127.0.0.1", port, clean_start=clean_start, properties=properties)
        self.client.loop_start()
        assert self.subscribed.wait(10)

    def identities(self):
        return [payload["identity"] for topic, payload, _, _ in self.received if topic.endswith("/door")]

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


def mqtt_door(port: int, ttl_s: int = 2) -> tuple[MqttAction, DoorActions]:
    action = MqttAction(f"127.0.0.1:{port}", "frontdoor", ttl_s=ttl_s, timeout_s=2.0)
    wait_for(lambda: action.connected, what="the kiosk's MQTT client to connect")
    return action, DoorActions([action], min_interval_s=0.001)


def test_mqtt_publishes_expiring_door_events_and_a_retained_home_assistant_sensor(broker):
    action, door = mqtt_door(broker.port)
    subscriber = Subscriber(broker.port)                      # connects after the kiosk: discovery must be retained
    assert door.on_decision(decision(), True, "frontdoor", 0.1).fired
    door.wait()
    wait_for(lambda: subscriber.identities() == ["ann"], what="the door event")
    discovery = [r for r in subscriber.received if r[0].startswith("homeassistant/")]
    (topic, config, retained, _), = discovery
    assert topic == "homeassistant/sensor/edge_face_frontdoor/last_visitor/config" and retained
    assert config["state_topic"] == "edge_face/frontdoor/door"
    _, event, retained, expiry = next(r for r in subscriber.received if r[0] == "edge_face/frontdoor/door")
    assert not retained and expiry is not None and 1 <= expiry <= 2       # the broker passes on what is left
    assert event["kiosk"] == "frontdoor" and len(event["event_id"]) == 32 and abs(event["time"] - time.time()) < 10
    assert door.counts["mqtt ok"] == 1
    subscriber.close()
    door.close()


def test_mqtt_events_during_a_broker_outage_fail_and_never_arrive_after_it_comes_back(broker):
    action, door = mqtt_door(broker.port)
    broker.stop()
    wait_for(lambda: not action.connected, what="the kiosk to notice the broker is gone")
    assert door.on_decision(decision(identity="during-outage"), True, "frontdoor", 0.1).fired
    door.wait()
    assert door.counts["mqtt failed"] == 1 and door.counts["mqtt ok"] == 0
    broker.start()
    subscriber = Subscriber(broker.port)
    wait_for(lambda: action.connected, what="the kiosk to reconnect")
    assert door.on_decision(decision(identity="after"), True, "frontdoor", 0.1).fired
    door.wait()
    wait_for(lambda: "after" in subscriber.identities(), what="the event after the outage")
    time.sleep(1.0)                                        # anything paho kept would have been sent on reconnect
    assert subscriber.identities() == ["after"] and door.counts["mqtt ok"] == 1
    subscriber.close()
    door.close()


def test_an_event_the_broker_does_not_acknowledge_in_time_fails_and_is_not_resent(broker):
    action, door = mqtt_door(broker.port)
    broker.process.send_signal(19)                         # SIGSTOP: connected, but nothing is acknowledged
    try:
        assert door.on_decision(decision(identity="unacknowledged"), True, "frontdoor", 0.1).fired
        door.wait(10)
        assert door.counts["mqtt failed"] == 1 and door.counts["mqtt ok"] == 0
    finally:
        broker.process.kill()                              # the frozen broker dies with what it had buffered
        broker.process.wait(10)
    broker.start()
    subscriber = Subscriber(broker.port)
    wait_for(lambda: action.connected, what="the fresh client to connect")
    time.sleep(1.0)
    assert subscriber.identities() == []                   # the unacknowledged event was dropped, never resent
    subscriber.close()
    door.close()


def test_an_expired_door_event_is_not_delivered_to_a_subscriber_that_comes_back_late(broker):
    away = Subscriber(broker.port, topics=("edge_face/#",), client_id="door-controller", clean_start=True)
    away.close()                                           # offline, its session (and subscription) kept
    action, door = mqtt_door(broker.port, ttl_s=1)
    assert door.on_decision(decision(identity="expired"), True, "frontdoor", 0.1).fired
    door.wait()
    time.sleep(2.2)                                        # longer than the event's 1 s expiry
    action.ttl_s = 60
    assert door.on_decision(decision(identity="fresh"), True, "frontdoor", 0.1).fired
    door.wait()
    back = Subscriber(broker.port, topics=("edge_face/#",), client_id="door-controller", clean_start=False)
    wait_for(lambda: "fresh" in back.identities(), what="the queued fresh event")
    assert back.identities() == ["fresh"] and door.counts["mqtt ok"] == 2
    back.close()
    door.close()


def test_a_bad_mqtt_address_is_one_line():
    for address in ("broker:0", "broker:99999", ":1883", "broker:x"):
        with pytest.raises(UserError, match="must be HOST or HOST:PORT"):
            MqttAction(address, "k")


# ---- the webhook against an HTTPS receiver -----------------------------------------------------------------------

def self_signed(folder: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "door controller")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
                   .not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                                  critical=False)
                   .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                   .sign(key, hashes.SHA256()))
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


def load_receiver():
    spec = importlib.util.spec_from_file_location("webhook_receiver", RECEIVER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def https_receiver(tmp_path):
    """The README's receiver (docs/webhook_receiver.py) behind TLS with a self-signed certificate."""
    module = load_receiver()
    events = []
    cert_file, key_file = self_signed(tmp_path)
    server = HTTPServer(("127.0.0.1", 0), module.handler_for(module.Receiver(SECRET), events.append))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"https://127.0.0.1:{server.server_port}/door", events, cert_file
    server.shutdown()


def test_a_webhook_to_an_untrusted_certificate_fails_in_one_clear_line(https_receiver, caplog):
    url, events, _ = https_receiver
    door = DoorActions([WebhookAction(url, SECRET)], min_interval_s=0.001)
    door.on_decision(decision(), True, "host", 0.1)
    door.wait()
    assert door.counts["webhook failed"] == 1 and events == []
    (line,) = [r.getMessage() for r in caplog.records if "webhook" in r.getMessage()]
    assert "its certificate was refused" in line and "--webhook_ca" in line and "\n" not in line
    door.close()


def test_a_webhook_trusted_with_its_ca_is_signed_and_the_receiver_checks_the_signature(https_receiver):
    url, events, cert_file = https_receiver
    door = DoorActions([WebhookAction(url, SECRET, ca_file=cert_file)], min_interval_s=0.001)
    door.on_decision(decision(identity="ann"), True, "host", 0.1)
    door.wait()
    assert door.counts["webhook ok"] == 1 and [e["identity"] for e in events] == ["ann"]
    assert len(events[0]["event_id"]) == 32
    forged = DoorActions([WebhookAction(url, b"another secret of enough bytes", ca_file=cert_file)],
                         min_interval_s=0.001)
    forged.on_decision(decision(identity="mallory"), True, "host", 0.1)
    forged.wait()
    assert forged.counts["webhook failed"] == 1 and len(events) == 1     # 403 from the receiver
    door.close()
    forged.close()


def test_the_receiver_refuses_a_stale_timestamp_and_a_replayed_event():
    from edge.kiosk.actions import sign_webhook

    module = load_receiver()
    receiver = module.Receiver(SECRET)
    body = json.dumps({"event_id": "e1", "identity": "ann"}).encode()
    now = 1_800_000_000
    headers = {"X-Edge-Face-Timestamp": str(now), "X-Edge-Face-Signature": sign_webhook(SECRET, str(now), body)}
    assert receiver.accept(headers, body, now=now + 59)["identity"] == "ann"
    with pytest.raises(module.Refused, match="replayed"):
        receiver.accept(headers, body, now=now + 59)
    with pytest.raises(module.Refused, match="stale"):
        module.Receiver(SECRET).accept(headers, body, now=now + 61)
    with pytest.raises(module.Refused, match="bad signature"):
        receiver.accept({**headers, "X-Edge-Face-Timestamp": str(now + 1)}, body, now=now)


def test_the_webhook_secret_must_be_private_and_long_enough(tmp_path):
    secret = tmp_path / "secret"
    secret.write_bytes(SECRET)
    secret.chmod(0o644)
    with pytest.raises(UserError, match="readable by other users; chmod 600"):
        read_webhook_secret(secret)
    secret.chmod(0o600)
    assert read_webhook_secret(secret) == SECRET
    secret.write_bytes(b"short")
    with pytest.raises(UserError, match="fewer than 16"):
        read_webhook_secret(secret)
    with pytest.raises(UserError, match="cannot be read"):
        read_webhook_secret(tmp_path / "missing")
    with pytest.raises(UserError, match="must be an http:// or https:// URL"):
        WebhookAction("ftp://door", SECRET)


def test_serve_refuses_a_webhook_without_a_secret_in_one_line(tmp_path, capsys):
    from edge.commands.cli import main

    assert main(["serve", "--bundle", str(tmp_path), "--webhook", "https://door.local/open"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--webhook needs --webhook_secret_file" in err and len(err.splitlines()) == 1


# ---- GPIO on gpiozero's mock pins --------------------------------------------------------------------------------

@pytest.fixture
def pins():
    from gpiozero.pins.mock import MockFactory

    factory = MockFactory()
    yield factory
    factory.close()


def test_gpio_drives_the_pin_for_the_opening_time(pins):
    action = GpioAction(17, open_s=0.05, pin_factory=pins)
    action.fire({})
    assert pins.pin(17).state
    wait_for(lambda: not pins.pin(17).state, what="the pin to go off")
    assert [s.state for s in pins.pin(17).states] == [False, True, False]
    action.close()


def test_overlapping_openings_keep_the_door_open_until_the_latest_ends(pins):
    action = GpioAction(17, open_s=0.4, pin_factory=pins)
    action.fire({})
    time.sleep(0.25)
    second = time.monotonic()
    action.fire({})                                        # a second person, 0.25 s later
    wait_for(lambda: not pins.pin(17).state, what="the pin to go off")
    closed = time.monotonic()
    states = pins.pin(17).states
    assert [s.state for s in states] == [False, True, False]               # never closed in between
    assert closed - second >= 0.4 and states[2].timestamp >= 0.25 + 0.4    # the second person got all 0.4 s
    action.close()


def test_close_cancels_a_pending_opening_and_leaves_the_pin_off(pins):
    action = GpioAction(17, open_s=0.3, pin_factory=pins)
    action.fire({})
    action.close()
    assert not pins.pin(17).state
    time.sleep(0.5)                                        # the cancelled timer would have fired by now
    assert [s.state for s in pins.pin(17).states] == [False, True, False]
    with pytest.raises(RuntimeError, match="closed"):
        action.fire({})


def test_missing_mqtt_and_gpio_libraries_say_what_to_install(monkeypatch):
    import sys

    for module in ("paho", "paho.mqtt", "paho.mqtt.client", "gpiozero"):
        monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(UserError, match=r"pip install 'edge-face\[mqtt\]'"):
        MqttAction("broker", "k")
    with pytest.raises(UserError, match="sudo apt install python3-gpiozero"):
        GpioAction(17)
