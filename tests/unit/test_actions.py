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

from edge.base.errors import UserError
from edge.kiosk.actions import DoorActions, GpioAction, MqttAction, WebhookAction, read_webhook_secret
from edge.kiosk.visits import VisitDecision
from scripted_camera import Clock

pytestmark = pytest.mark.unit
mqtt = pytest.importorskip("paho.mqtt.client")
RECEIVER = Path(__file__).resolve().parents[2] / "docs" / "webhook_receiver.py"
SECRET = b"a shared secret of enough bytes"


def decision(outcome="named", identity="ann", track=1, interrupted="", liveness="live"):
    made = VisitDecision(track, 10, outcome, identity if outcome == "named" else None, 0.97, identity, 2, "",
                         [0, 0, 1, 1], look_time_s=1.0, liveness={"verdict": liveness, "score": 1.0, "checks": {}})
    made.interrupted = interrupted
    return made


def wait_for(condition, timeout=15.0, what="the condition"):
    """For a state that sends no signal (a port that listens, paho's connection flag): polled, and the timeout only
    bounds a failure."""
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
    for verdict in ("insufficient", "attack", "off"):
        assert door.on_decision(decision(liveness=verdict), True, "host", 0.1).why == "not live"
    assert door.on_decision(decision(interrupted="the camera stopped"), True, "host", 0.1).why == "visit cut short"
    assert door.on_decision(decision(), False, "host", 0.1).why == "kiosk unhealthy"
    assert door.on_decision(decision(), True, "host", 1.0).why == "looks too old"
    assert door.on_decision(decision(), True, "host", float("inf")).why == "looks too old"
    assert door.on_decision(decision(), True, "host", 0.2).fired
    assert door.on_decision(decision(track=2), True, "host", 0.1).why == "rate limited"
    assert door.on_decision(decision(identity="bob"), True, "host", 0.1).fired
    assert {k: door.counts[k] for k in ("not named", "not live", "visit cut short", "kiosk unhealthy",
                                        "looks too old", "rate limited")} == {
        "not named": 2, "not live": 3, "visit cut short": 1, "kiosk unhealthy": 1, "looks too old": 2,
        "rate limited": 1}
    door.close()


def test_a_kiosk_started_with_no_liveness_opens_on_the_verdict_off():
    door = DoorActions([], min_interval_s=60, max_frame_age_s=1.0, require_live=False)
    assert door.on_decision(decision(liveness="off"), True, "host", 0.1).fired
    door.close()


class SlowAction:
    """An action that takes its time (a hung controller): events queued behind it outlive their ttl."""

    name = "slow"

    def __init__(self):
        self.fired, self.started, self.release = [], threading.Event(), threading.Event()

    def fire(self, event):
        self.started.set()
        self.release.wait(10)
        self.fired.append(event["identity"])

    def close(self):
        pass


def test_an_event_that_waited_past_its_ttl_is_dropped_unsent_not_delivered_late():
    slow, clock = SlowAction(), Clock()
    door = DoorActions([slow], min_interval_s=0.001, ttl_s=0.2, clock=clock)
    assert door.on_decision(decision(identity="ann"), True, "host", 0.1).fired
    assert slow.started.wait(10)                                                   # ann's event is being sent
    assert door.on_decision(decision(identity="bob"), True, "host", 0.1).fired     # queued behind ann's
    clock.now += 0.3
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

        self.received, self.subscribed, self.arrived = [], threading.Event(), threading.Condition()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe([(t, 1) for t in topics])
        self.client.on_subscribe = lambda *args: self.subscribed.set()
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = 300            # kept by the broker while offline (when not clean)
        self.client.connect("127.0.0.1", port, clean_start=clean_start, properties=properties)
        self.client.loop_start()
        assert self.subscribed.wait(10)

    def _on_message(self, client, userdata, message):
        with self.arrived:
            self.received.append((message.topic, json.loads(message.payload), message.retain,
                                  getattr(message.properties, "MessageExpiryInterval", None)))
            self.arrived.notify_all()

    def identities(self):
        return [payload["identity"] for topic, payload, _, _ in self.received if topic.endswith("/door")]

    def announced(self) -> bool:
        """The kiosk's Home Assistant sensor arrived: the kiosk announces it on every connection."""
        return any(topic.startswith("homeassistant/") for topic, _, _, _ in self.received)

    def wait_for(self, condition, what: str, timeout: float = 10.0) -> None:
        with self.arrived:
            assert self.arrived.wait_for(condition, timeout), f"timed out waiting for {what}"

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


def mqtt_door(port: int, ttl_s: int = 2) -> tuple[MqttAction, DoorActions]:
    probe = Subscriber(port, topics=("homeassistant/#",))
    action = MqttAction(f"127.0.0.1:{port}", "frontdoor", ttl_s=ttl_s, timeout_s=2.0)
    # once its sensor arrives, the kiosk is connected and the broker holds the sensor, retained
    probe.wait_for(probe.announced, "the kiosk's MQTT client to connect")
    probe.close()
    return action, DoorActions([action], min_interval_s=0.001)


def test_mqtt_publishes_expiring_door_events_and_a_retained_home_assistant_sensor(broker):
    action, door = mqtt_door(broker.port)
    subscriber = Subscriber(broker.port)                      # connects after the kiosk: discovery must be retained
    assert door.on_decision(decision(), True, "frontdoor", 0.1).fired
    door.wait()
    subscriber.wait_for(lambda: subscriber.identities() == ["ann"], "the door event")
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
    subscriber.wait_for(subscriber.announced, "the kiosk to reconnect")
    assert door.on_decision(decision(identity="after"), True, "frontdoor", 0.1).fired
    door.wait()
    # one client's events arrive in order: anything paho kept was resent on reconnection, so before this one
    subscriber.wait_for(lambda: "after" in subscriber.identities(), "the event after the outage")
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
    subscriber.wait_for(subscriber.announced, "the fresh client to connect")
    assert door.on_decision(decision(identity="after"), True, "frontdoor", 0.1).fired
    door.wait()
    # one client's events arrive in order: anything the kiosk kept was resent on reconnection, so before this one
    subscriber.wait_for(lambda: "after" in subscriber.identities(), "the event after the restart")
    assert subscriber.identities() == ["after"]            # the unacknowledged event was dropped, never resent
    subscriber.close()
    door.close()


def test_an_expired_door_event_is_not_delivered_to_a_subscriber_that_comes_back_late(broker):
    away = Subscriber(broker.port, topics=("edge_face/#",), client_id="door-controller", clean_start=True)
    away.close()                                           # offline, its session (and subscription) kept
    action, door = mqtt_door(broker.port, ttl_s=1)
    assert door.on_decision(decision(identity="expired"), True, "frontdoor", 0.1).fired
    door.wait()
    # the broker's own clock must pass the 1 s expiry (whole seconds: up to 2 s); no test can move it, and waiting
    # longer changes nothing
    time.sleep(2.2)
    action.ttl_s = 60
    assert door.on_decision(decision(identity="fresh"), True, "frontdoor", 0.1).fired
    door.wait()
    back = Subscriber(broker.port, topics=("edge_face/#",), client_id="door-controller", clean_start=False)
    back.wait_for(lambda: "fresh" in back.identities(), "the queued fresh event")
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

class Timers(Clock):
    """A monotonic clock, and ``threading.Timer`` on it (``timer``): a timer runs, on the test's thread, when the
    test moves the clock to its time."""

    def __init__(self):
        super().__init__()
        self.pending = []

    def timer(self, interval, function):
        return FakeTimer(self, interval, function)

    def advance(self, seconds: float) -> None:
        end = self.now + seconds
        while due := [timer for timer in self.pending if timer.due <= end]:
            timer = min(due, key=lambda t: t.due)
            self.pending.remove(timer)
            self.now = timer.due
            timer.function()
        self.now = end


class FakeTimer:
    """``threading.Timer``'s start and cancel, on a ``Timers`` clock."""

    def __init__(self, timers: Timers, interval: float, function):
        self.timers, self.due, self.function, self.daemon = timers, timers.now + interval, function, True

    def start(self):
        self.timers.pending.append(self)

    def cancel(self):
        if self in self.timers.pending:
            self.timers.pending.remove(self)


@pytest.fixture
def pins():
    from gpiozero.pins.mock import MockFactory

    factory = MockFactory()
    yield factory
    factory.close()


def test_gpio_drives_the_pin_for_the_opening_time(pins):
    timers = Timers()
    action = GpioAction(17, open_s=3.0, pin_factory=pins, clock=timers, timer=timers.timer)
    action.fire({})
    timers.advance(2.999)
    assert pins.pin(17).state
    timers.advance(0.002)
    assert not pins.pin(17).state
    assert [s.state for s in pins.pin(17).states] == [False, True, False]
    action.close()


def test_overlapping_openings_keep_the_door_open_until_the_latest_ends(pins):
    timers = Timers()
    action = GpioAction(17, open_s=3.0, pin_factory=pins, clock=timers, timer=timers.timer)
    action.fire({})
    timers.advance(1.5)
    action.fire({})                                        # a second person, 1.5 s later
    timers.advance(2.999)                                  # past the first opening's end
    assert pins.pin(17).state                              # the second person gets all 3 s
    timers.advance(0.002)
    assert not pins.pin(17).state
    assert [s.state for s in pins.pin(17).states] == [False, True, False]     # never closed in between
    action.close()


def test_close_cancels_a_pending_opening_and_leaves_the_pin_off(pins):
    timers = Timers()
    action = GpioAction(17, open_s=3.0, pin_factory=pins, clock=timers, timer=timers.timer)
    action.fire({})
    action.close()
    assert not pins.pin(17).state
    timers.advance(5.0)                                    # the cancelled timer would have fired by now
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
