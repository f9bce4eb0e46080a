"""Door actions fail closed, are rate-limited per person, and reach a webhook, an MQTT broker (with Home
Assistant discovery) and a GPIO pin; brokers and pins are stand-ins here."""
import json
import sys
import threading
import types
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from edge.actions import DoorActions, GpioAction, MqttAction, WebhookAction
from edge.errors import UserError
from edge.visits import VisitDecision

pytestmark = pytest.mark.unit


def decision(outcome="named", identity="ann", track=1):
    return VisitDecision(track, 10, outcome, identity if outcome == "named" else None, 0.97, identity, 2, "",
                         [0, 0, 1, 1])


@pytest.fixture
def webhook():
    received = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/door", received
    server.shutdown()


def test_only_a_named_visit_of_a_healthy_kiosk_opens_and_each_person_at_most_once_per_interval(webhook):
    url, received = webhook
    door = DoorActions([WebhookAction(url)], min_interval_s=60)
    assert door.on_decision(decision("unknown"), True, "host").why == "not named"
    assert door.on_decision(decision("undecided"), True, "host").why == "not named"
    assert door.on_decision(decision(), False, "host").why == "kiosk unhealthy"
    assert door.on_decision(decision(), True, "host").fired
    assert door.on_decision(decision(track=2), True, "host").why == "rate limited"
    assert door.on_decision(decision(identity="bob"), True, "host").fired
    door.wait()
    assert [e["identity"] for e in received] == ["ann", "bob"] and received[0]["kiosk"] == "host"
    assert door.counts["webhook ok"] == 2 and door.counts["rate limited"] == 1
    door.close()


def test_a_failing_webhook_is_counted_and_does_not_stop_the_others():
    door = DoorActions([WebhookAction("http://127.0.0.1:9/nothing-listens")], min_interval_s=0.001)
    assert door.on_decision(decision(), True, "host").fired
    door.wait()
    assert door.counts["webhook failed"] == 1
    door.close()
    with pytest.raises(UserError, match="must be an http:// or https:// URL"):
        WebhookAction("ftp://door")


def test_mqtt_announces_a_home_assistant_sensor_and_publishes_door_events(monkeypatch):
    published = []

    class Info:
        def wait_for_publish(self, timeout):
            return True

    class Client:
        def __init__(self, api, client_id):
            self.client_id = client_id

        def connect_async(self, host, port):
            self.address = (host, port)

        def loop_start(self):
            self.on_connect(self, None, None, 0, None)

        def publish(self, topic, payload, qos=0, retain=False):
            published.append((topic, json.loads(payload), retain))
            return Info()

        def loop_stop(self):
            pass

        def disconnect(self):
            pass

    client_module = types.SimpleNamespace(Client=Client, CallbackAPIVersion=types.SimpleNamespace(VERSION2=2))
    monkeypatch.setitem(sys.modules, "paho", types.SimpleNamespace(mqtt=types.SimpleNamespace(client=client_module)))
    monkeypatch.setitem(sys.modules, "paho.mqtt", types.SimpleNamespace(client=client_module))
    monkeypatch.setitem(sys.modules, "paho.mqtt.client", client_module)
    action = MqttAction("broker.local:1884", "frontdoor")
    door = DoorActions([action])
    door.on_decision(decision(), True, "frontdoor")
    door.wait()
    door.close()
    topic, config, retained = published[0]
    assert topic == "homeassistant/sensor/edge_face_frontdoor/last_visitor/config" and retained
    assert config["state_topic"] == "edge_face/frontdoor/door"
    assert published[1][0] == "edge_face/frontdoor/door" and published[1][1]["identity"] == "ann"


def test_gpio_drives_the_pin_for_the_opening_time(monkeypatch):
    states = []

    class OutputDevice:
        def __init__(self, pin, active_high, initial_value):
            states.append(("init", pin, initial_value))

        def on(self):
            states.append("on")

        def off(self):
            states.append("off")

        def close(self):
            states.append("closed")

    monkeypatch.setitem(sys.modules, "gpiozero", types.SimpleNamespace(OutputDevice=OutputDevice))
    door = DoorActions([GpioAction(17, open_s=0.05)])
    door.on_decision(decision(), True, "host")
    door.wait()
    threading.Event().wait(0.2)
    door.close()
    assert states[:3] == [("init", 17, False), "on", "off"] and states[-1] == "closed"


def test_missing_mqtt_and_gpio_libraries_say_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "paho", None)
    monkeypatch.setitem(sys.modules, "paho.mqtt", None)
    monkeypatch.setitem(sys.modules, "paho.mqtt.client", None)
    monkeypatch.setitem(sys.modules, "gpiozero", None)
    with pytest.raises(UserError, match="pip install paho-mqtt"):
        MqttAction("broker", "k")
    with pytest.raises(UserError, match="sudo apt install python3-gpiozero"):
        GpioAction(17)
