"""Door actions on a visit's decision: a signed webhook, MQTT v5 (with Home Assistant discovery), a GPIO output.

They fail closed. ``DoorActions.on_decision`` opens only for a ``named`` visit judged live (edge.liveness; unless
the kiosk was started with --no_liveness) that was not cut short, of a healthy kiosk (its camera streaming, its loop
running), whose newest look is younger than ``max_frame_age_s``, and each person at most once per
``min_interval_s``; every refusal is counted by its reason. An event that opens is stamped with an id and its time
and is good for ``ttl_s`` seconds: an action that has not started by then drops it, an MQTT broker drops it (message
expiry), a receiver can check the webhook's signed timestamp. No action is ever retried or queued for later: a door
event that could not be delivered at once is counted as failed and is gone, so a door never opens minutes after the
visitor left. Each action runs on a worker thread of its own, so a slow webhook delays neither the frame loop nor
the GPIO relay.

A visit judged a presentation attack raises an alert (``DoorActions.alert``): to the alert webhooks (never the door's
URL, which a controller may take as "open") and to ``edge_face/<kiosk>/alert`` on the MQTT broker.
"""
from __future__ import annotations

import abc
import hashlib
import hmac
import json
import logging
import queue
import ssl
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from edge.base.errors import UserError
from edge.base.private_files import read_private

log = logging.getLogger(__name__)
MIN_INTERVAL_S = 10.0
MAX_FRAME_AGE_S = 1.0
DOOR_TIMEOUT_S = 2.0
DOOR_EVENT_TTL_S = 2
ALERT_TTL_S = 3600                  # an alert is news for an hour; a door event for seconds
MQTT_PREFIX = "edge_face"
HA_DISCOVERY = "homeassistant"
MQTT_RECONNECT_S = (0.5, 10.0)      # paho's reconnection backoff, first and longest wait
MIN_SECRET_BYTES = 16
QUEUED_EVENTS = 10                  # per action; more waiting than this means the action is stuck: drop
# Why a decision opened nothing, in the order they are checked (each a label of /metrics' edge_face_door_refused).
# "suspended": the person is suspended (named, opens nothing); a fleet's kiosk (edge.fleet): "replica too old", not
# caught up with its server for longer than --max_replica_age; "not allowed here now", the door's access rules do not
# let this person in at this hour; "liveness required", the fleet requires liveness and the kiosk runs without.
REFUSALS = ("not named", "visit cut short", "kiosk unhealthy", "suspended", "replica too old", "not allowed here now",
            "liveness required", "not live", "looks too old", "rate limited")


class Action(abc.ABC):
    name = ""

    @abc.abstractmethod
    def fire(self, event: dict) -> None:
        """Acts on one door-opening event (JSON-ready) at once, or raises (OSError and the like); never queues it
        for later."""

    def close(self) -> None:
        """Releases what the action holds."""


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A door controller that answers with a redirect has not opened the door: a 3xx is a failure."""

    def redirect_request(self, *args, **kwargs):
        return None


def read_webhook_secret(path: Path) -> bytes:
    """The shared secret that signs webhook events: a private file (0600) of at least MIN_SECRET_BYTES bytes."""
    secret = read_private(path, "the webhook secret").strip()
    if len(secret) < MIN_SECRET_BYTES:
        raise UserError(f"the webhook secret {path} holds {len(secret)} bytes, fewer than {MIN_SECRET_BYTES}; make "
                        f"one with: head -c 32 /dev/urandom | base64 > {path}; chmod 600 {path}")
    return secret


def sign_webhook(secret: bytes, timestamp: str, body: bytes) -> str:
    """The ``X-Edge-Face-Signature`` value: ``sha256=`` and the hex HMAC-SHA256 of ``timestamp + "." + body``."""
    return "sha256=" + hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


class WebhookAction(Action):
    """POSTs the event as JSON to a URL (Home Assistant webhooks, Node-RED, a door controller), signed with a shared
    secret and timestamped; HTTPS certificates are verified (against the system's CAs, or ``ca_file``)."""

    def __init__(self, url: str, secret: bytes, timeout_s: float = DOOR_TIMEOUT_S, ca_file: Path | None = None):
        if not url.startswith(("http://", "https://")):
            raise UserError(f"--webhook {url!r} must be an http:// or https:// URL")
        self.url, self.name, self.secret, self.timeout_s = url, "webhook", secret, timeout_s
        try:
            context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
        except (OSError, ssl.SSLError) as err:
            raise UserError(f"--webhook_ca {ca_file} is not a readable PEM certificate file ({err})") from err
        self._opener = urllib.request.build_opener(_NoRedirects(), urllib.request.HTTPSHandler(context=context))

    def fire(self, event: dict) -> None:
        body = json.dumps(event).encode()
        timestamp = str(int(time.time()))
        request = urllib.request.Request(self.url, data=body, method="POST", headers={
            "Content-Type": "application/json", "X-Edge-Face-Timestamp": timestamp,
            "X-Edge-Face-Signature": sign_webhook(self.secret, timestamp, body)})
        try:
            with self._opener.open(request, timeout=self.timeout_s) as response:
                response.read()
        except urllib.error.URLError as err:
            if isinstance(err.reason, ssl.SSLCertVerificationError):
                raise ConnectionError(f"{self.url}: its certificate was refused ({err.reason.verify_message}); "
                                      f"trust its CA with --webhook_ca FILE") from None
            raise


class MqttAction(Action):
    """Publishes each door event to ``edge_face/<kiosk>/door`` (MQTT v5, QoS 1, message expiry ``ttl_s``) and
    announces a retained Home Assistant sensor on every connection.

    Nothing is published while disconnected, and an event the broker has not acknowledged within ``timeout_s`` is
    failed: paho would keep such a message and send it on reconnection, so the client that holds it is dropped
    and a fresh one connects instead."""

    def __init__(self, address: str, kiosk: str, ttl_s: int = DOOR_EVENT_TTL_S, timeout_s: float = DOOR_TIMEOUT_S):
        try:
            import paho.mqtt.client  # noqa: F401 - checked here, used in _new_client
        except ImportError as err:
            raise UserError(f"--mqtt needs paho-mqtt: pip install 'edge-face[mqtt]' ({err})") from err
        host, _, port = address.partition(":")
        if not host or (port and not (port.isascii() and port.isdigit() and 0 < int(port) < 65536)):
            raise UserError(f"--mqtt {address!r} must be HOST or HOST:PORT with a port from 1 to 65535")
        self.host, self.port = host, int(port) if port else 1883
        self.name, self.kiosk, self.ttl_s, self.timeout_s = "mqtt", kiosk, ttl_s, timeout_s
        self.topic = f"{MQTT_PREFIX}/{kiosk}/door"
        self.alert_topic = f"{MQTT_PREFIX}/{kiosk}/alert"
        self._client = self._new_client()

    def _new_client(self):
        import paho.mqtt.client as mqtt

        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"edge-face-{self.kiosk}",
                             protocol=mqtt.MQTTv5)
        client.on_connect = self._on_connect
        client.reconnect_delay_set(*MQTT_RECONNECT_S)
        client.connect_async(self.host, self.port, clean_start=True)
        client.loop_start()
        return client

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.warning("mqtt: the broker %s:%d refused the connection: %s", self.host, self.port, reason_code)
            return
        config = {"name": f"{self.kiosk} last visitor", "unique_id": f"edge_face_{self.kiosk}_last_visitor",
                  "state_topic": self.topic, "value_template": "{{ value_json.identity }}",
                  "json_attributes_topic": self.topic, "icon": "mdi:door-open"}
        client.publish(f"{HA_DISCOVERY}/sensor/edge_face_{self.kiosk}/last_visitor/config", json.dumps(config),
                       qos=1, retain=True)

    @property
    def connected(self) -> bool:
        return self._client.is_connected()

    def fire(self, event: dict) -> None:
        self.publish(self.topic, event, self.ttl_s)

    def publish(self, topic: str, event: dict, ttl_s: int) -> None:
        """Publishes ``event`` on ``topic`` (QoS 1, expiring after ``ttl_s``) and waits for the broker's
        acknowledgement, or raises."""
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        client = self._client
        if not client.is_connected():
            raise ConnectionError(f"not connected to the broker {self.host}:{self.port}: the event is not sent "
                                  f"(never queued for later)")
        properties = Properties(PacketTypes.PUBLISH)
        properties.MessageExpiryInterval = ttl_s
        info = client.publish(topic, json.dumps(event), qos=1, properties=properties)
        try:
            info.wait_for_publish(timeout=self.timeout_s)
            acknowledged = info.is_published()
        except (RuntimeError, ValueError):
            acknowledged = False
        if not acknowledged:
            self._replace_client()
            raise TimeoutError(f"the broker {self.host}:{self.port} did not acknowledge the event within "
                               f"{self.timeout_s:g} s: failed, and dropped so that it is never sent late")

    def _replace_client(self) -> None:
        old, self._client = self._client, None
        old.disconnect()                      # first, so its network thread never reconnects and resends
        threading.Thread(target=old.loop_stop, name="mqtt client closing", daemon=True).start()
        self._client = self._new_client()

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


class MqttAlerts(Action):
    """Alerts on the door's MQTT connection, to ``edge_face/<kiosk>/alert``."""

    def __init__(self, mqtt: MqttAction):
        self.name, self.mqtt = "mqtt alert", mqtt

    def fire(self, event: dict) -> None:
        self.mqtt.publish(self.mqtt.alert_topic, event, ALERT_TTL_S)


class GpioAction(Action):
    """Drives a GPIO pin high for ``open_s`` seconds (a relay on a door strike), through gpiozero on a Pi.

    Openings that overlap extend the window to the latest one's end (two people let in three seconds apart both
    get their full time); ``close`` cancels what is pending and leaves the pin off. It times the window with
    ``clock`` and ``timer`` (``time.monotonic`` and ``threading.Timer``; a test passes its own)."""

    def __init__(self, pin: int, open_s: float = 3.0, pin_factory=None, clock=time.monotonic,
                 timer=threading.Timer):
        try:
            from gpiozero import GPIOZeroError, OutputDevice
        except ImportError as err:
            raise UserError(f"--gpio needs gpiozero (sudo apt install python3-gpiozero on Raspberry Pi OS, or pip "
                            f"install 'edge-face[gpio]') ({err})") from err
        self.name, self.open_s = f"gpio{pin}", open_s
        self._clock, self._new_timer = clock, timer
        try:
            self._pin = OutputDevice(pin, active_high=True, initial_value=False, pin_factory=pin_factory)
        except GPIOZeroError as err:          # no GPIO on this machine, a pin in use or out of range
            raise UserError(f"--gpio {pin}: {err} (is this a Raspberry Pi, and the pin free?)") from None
        self._lock = threading.Lock()
        self._close_at = 0.0                   # monotonic time at which the pin goes off
        self._timer: threading.Timer | None = None
        self._closed = False

    def fire(self, event: dict) -> None:
        with self._lock:
            if self._closed:
                raise RuntimeError(f"{self.name} is closed")
            self._close_at = max(self._close_at, self._clock() + self.open_s)
            self._pin.on()
            if self._timer is None:
                self._schedule()

    def _schedule(self) -> None:
        self._timer = self._new_timer(max(0.0, self._close_at - self._clock()), self._due)
        self._timer.daemon = True
        self._timer.start()

    def _due(self) -> None:
        with self._lock:
            if self._closed:
                return
            if self._clock() < self._close_at:         # extended while this timer ran: wait for the new end
                self._schedule()
                return
            self._timer = None
            self._pin.off()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._pin.off()
            self._pin.close()


@dataclass
class DoorResult:
    fired: bool
    why: str          # "opened", or one of REFUSALS


class DoorActions:
    """Decides whether a decision opens the door, and runs each action on its own worker thread; ``clock`` (monotonic)
    times the rate limit and each event's ttl."""

    def __init__(self, actions: list[Action], min_interval_s: float = MIN_INTERVAL_S,
                 max_frame_age_s: float = MAX_FRAME_AGE_S, ttl_s: float = DOOR_EVENT_TTL_S, clock=time.monotonic,
                 require_live: bool = True, alerts: list[Action] = ()):
        """``require_live``: a decision opens only with the liveness verdict ``live``; False only for a kiosk
        started with --no_liveness (its decisions say ``off``); ``alerts``: where attack alerts go."""
        self.actions, self.alerts, self._clock, self.require_live = actions, list(alerts), clock, require_live
        self.min_interval_s, self.max_frame_age_s, self.ttl_s = min_interval_s, max_frame_age_s, ttl_s
        self.counts: Counter = Counter()              # "<action> ok|failed|expired|dropped" and REFUSALS
        self._counting = threading.Lock()
        self._last_open: dict[str, float] = {}
        self._queues = [queue.Queue(maxsize=QUEUED_EVENTS) for _ in actions + self.alerts]
        self._workers = [threading.Thread(target=self._run, args=(action, work), name=f"door {action.name}",
                                          daemon=True) for action, work in zip(actions + self.alerts, self._queues)]
        for worker in self._workers:
            worker.start()

    def on_decision(self, decision, healthy: bool, kiosk: str, look_age_s: float, barred: str = "") -> DoorResult:
        """``look_age_s``: seconds since the frame of the newest look the decision rests on was captured; ``barred``:
        why the kiosk bars this visit (one of REFUSALS from "suspended" to "liveness required"; "" when it does not)."""
        if decision.outcome != "named" or decision.identity is None:
            return self._refuse("not named")
        if decision.interrupted:
            return self._refuse("visit cut short")
        if not healthy:
            return self._refuse("kiosk unhealthy")
        if barred:
            return self._refuse(barred)
        if self.require_live and (decision.liveness or {}).get("verdict") != "live":
            return self._refuse("not live")
        if not look_age_s < self.max_frame_age_s:
            return self._refuse("looks too old")
        now = self._clock()
        if now - self._last_open.get(decision.identity, -1e9) < self.min_interval_s:
            return self._refuse("rate limited")
        self._last_open[decision.identity] = now
        event = {"event_id": uuid.uuid4().hex, "kiosk": kiosk, "identity": decision.identity,
                 "score": decision.score, "track": decision.track, "time": round(time.time(), 3),
                 "ttl_s": self.ttl_s}
        self._send(zip(self.actions, self._queues), event, now + self.ttl_s)
        return DoorResult(True, "opened")

    def alert(self, decision, kiosk: str) -> None:
        """Sends an alert for a visit judged a presentation attack, with the liveness evidence."""
        event = {"event_id": uuid.uuid4().hex, "kiosk": kiosk, "alert": "presentation attack",
                 "identity": decision.identity, "best_match": decision.best_match, "score": decision.score,
                 "track": decision.track, "liveness": decision.liveness, "time": round(time.time(), 3)}
        self._send(zip(self.alerts, self._queues[len(self.actions):]), event, self._clock() + ALERT_TTL_S)

    def _send(self, targets, event: dict, deadline: float) -> None:
        for action, work in targets:
            try:
                work.put_nowait((event, deadline))
            except queue.Full:
                self._count(f"{action.name} dropped")

    def _refuse(self, why: str) -> DoorResult:
        self._count(why)
        return DoorResult(False, why)

    def _count(self, what: str) -> None:
        with self._counting:
            self.counts[what] += 1

    def _run(self, action: Action, work: queue.Queue) -> None:
        while True:
            event, deadline = work.get()
            try:
                if event is None:
                    return
                if self._clock() > deadline:
                    self._count(f"{action.name} expired")
                    log.warning("door action %s: event %s expired before it could be sent (older than %g s)",
                                action.name, event["event_id"], self.ttl_s)
                    continue
                action.fire(event)
                self._count(f"{action.name} ok")
            except Exception as err:  # noqa: BLE001 - any failure of a door action is logged and counted
                self._count(f"{action.name} failed")
                log.warning("door action %s failed: %s", action.name, err)
            finally:
                work.task_done()

    def wait(self, timeout: float = 5.0) -> None:
        """Until queued actions ran (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        for work in self._queues:
            with work.all_tasks_done:          # notified by the task_done that finishes the last queued event
                work.all_tasks_done.wait_for(lambda: not work.unfinished_tasks, deadline - time.monotonic())

    def close(self) -> None:
        """Stops the workers (what is queued is dropped: at shutdown no door opens) and releases the actions."""
        for work in self._queues:
            while True:
                try:
                    work.get_nowait()
                    work.task_done()
                except queue.Empty:
                    break
            work.put((None, 0.0))
        for worker in self._workers:
            worker.join(timeout=DOOR_TIMEOUT_S + 1)
        for action in self.actions + self.alerts:
            action.close()
