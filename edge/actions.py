"""Door actions on a visit's decision: a webhook, MQTT (with Home Assistant discovery), a GPIO output on a Pi.

They fail closed: only a ``named`` decision opens anything, and only while the kiosk is healthy (its camera
streaming); unknown and undecided visits, and every decision of a kiosk that lost its camera, open nothing. Each
person opens at most once per ``min_interval_s``. A failing action is logged and counted, never retried in the
frame loop's time: webhooks and MQTT publish from a worker thread.
"""
from __future__ import annotations

import abc
import json
import logging
import queue
import threading
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass

from edge.errors import UserError

log = logging.getLogger(__name__)
MIN_INTERVAL_S = 10.0
WEBHOOK_TIMEOUT_S = 3.0
MQTT_PREFIX = "edge_face"
HA_DISCOVERY = "homeassistant"


class Action(abc.ABC):
    name = ""

    @abc.abstractmethod
    def fire(self, event: dict) -> None:
        """Acts on one door-opening event (JSON-ready); raises on failure (OSError and the like)."""

    def close(self) -> None:
        """Releases what the action holds."""


class WebhookAction(Action):
    """POSTs the event as JSON to a URL (Home Assistant webhooks, Node-RED, a door controller)."""

    def __init__(self, url: str):
        if not url.startswith(("http://", "https://")):
            raise UserError(f"--webhook {url!r} must be an http:// or https:// URL")
        self.url, self.name = url, "webhook"

    def fire(self, event: dict) -> None:
        request = urllib.request.Request(self.url, data=json.dumps(event).encode(), method="POST",
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=WEBHOOK_TIMEOUT_S) as response:   # noqa: S310 (http/s only)
            response.read()


class MqttAction(Action):
    """Publishes each door event to ``edge_face/<kiosk>/door``; announces a Home Assistant sensor on connect."""

    def __init__(self, address: str, kiosk: str):
        try:
            import paho.mqtt.client as mqtt
        except ImportError as err:
            raise UserError(f"--mqtt needs paho-mqtt: pip install paho-mqtt ({err})") from err
        host, _, port = address.partition(":")
        self.name, self.kiosk = "mqtt", kiosk
        self.topic = f"{MQTT_PREFIX}/{kiosk}/door"
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"edge-face-{kiosk}")
        self._client.on_connect = lambda client, *args: self._announce()
        self._client.connect_async(host, int(port or 1883))
        self._client.loop_start()

    def _announce(self) -> None:
        config = {"name": f"{self.kiosk} last visitor", "unique_id": f"edge_face_{self.kiosk}_last_visitor",
                  "state_topic": self.topic, "value_template": "{{ value_json.identity }}",
                  "json_attributes_topic": self.topic, "icon": "mdi:door-open"}
        self._client.publish(f"{HA_DISCOVERY}/sensor/edge_face_{self.kiosk}/last_visitor/config",
                             json.dumps(config), qos=1, retain=True)

    def fire(self, event: dict) -> None:
        info = self._client.publish(self.topic, json.dumps(event), qos=1)
        info.wait_for_publish(timeout=WEBHOOK_TIMEOUT_S)

    def close(self) -> None:
        self._client.loop_stop()
        self._client.disconnect()


class GpioAction(Action):
    """Drives a GPIO pin high for ``open_s`` seconds (a relay on a door strike), through gpiozero on a Pi."""

    def __init__(self, pin: int, open_s: float = 3.0):
        try:
            from gpiozero import OutputDevice
        except ImportError as err:
            raise UserError(f"--gpio needs gpiozero (sudo apt install python3-gpiozero on Raspberry Pi OS) ({err})") \
                from err
        self.name, self.open_s = f"gpio{pin}", open_s
        self._pin = OutputDevice(pin, active_high=True, initial_value=False)

    def fire(self, event: dict) -> None:
        self._pin.on()
        timer = threading.Timer(self.open_s, self._pin.off)
        timer.daemon = True
        timer.start()

    def close(self) -> None:
        self._pin.off()
        self._pin.close()


@dataclass
class DoorResult:
    fired: bool
    why: str          # "opened", or why not: "not named", "kiosk unhealthy", "rate limited"


class DoorActions:
    """Decides whether a decision opens the door, and runs the actions on a worker thread."""

    def __init__(self, actions: list[Action], min_interval_s: float = MIN_INTERVAL_S):
        self.actions = actions
        self.min_interval_s = min_interval_s
        self.counts: Counter = Counter()              # "<action> ok" / "<action> failed" / skip reasons
        self._last_open: dict[str, float] = {}
        self._work: queue.Queue = queue.Queue(maxsize=100)
        self._worker = threading.Thread(target=self._run, name="door actions", daemon=True)
        if actions:
            self._worker.start()

    def on_decision(self, decision, healthy: bool, kiosk: str) -> DoorResult:
        if decision.outcome != "named" or decision.identity is None:
            return self._skip("not named")
        if not healthy:
            return self._skip("kiosk unhealthy")
        now = time.monotonic()
        if now - self._last_open.get(decision.identity, -1e9) < self.min_interval_s:
            return self._skip("rate limited")
        self._last_open[decision.identity] = now
        event = {"kiosk": kiosk, "identity": decision.identity, "score": decision.score, "track": decision.track,
                 "time": time.time()}
        for action in self.actions:
            try:
                self._work.put_nowait((action, event))
            except queue.Full:
                self.counts[f"{action.name} dropped"] += 1
        return DoorResult(True, "opened")

    def _skip(self, why: str) -> DoorResult:
        self.counts[why] += 1
        return DoorResult(False, why)

    def _run(self) -> None:
        while True:
            action, event = self._work.get()
            if action is None:
                return
            try:
                action.fire(event)
                self.counts[f"{action.name} ok"] += 1
            except Exception as err:  # noqa: BLE001 - any failure of a door action is logged and counted
                self.counts[f"{action.name} failed"] += 1
                log.warning("door action %s failed: %s", action.name, err)
            finally:
                self._work.task_done()

    def wait(self, timeout: float = 5.0) -> None:
        """Until queued actions ran (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        while self._work.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)

    def close(self) -> None:
        if self.actions:
            self.wait()
            self._work.put((None, None))
        for action in self.actions:
            action.close()
