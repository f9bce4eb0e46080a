"""A door controller's side of ``edge serve --webhook``: accept an event only if it is signed and fresh.

Run it as ``python docs/webhook_receiver.py SECRET_FILE PORT`` (plain HTTP on 127.0.0.1, for trying it out; put it
behind TLS for real use). The kiosk signs ``timestamp + "." + body`` with HMAC-SHA256 and the shared secret; a
receiver recomputes it, compares in constant time, refuses an event whose timestamp is more than WINDOW_S from
its own clock (a replay) and remembers the event ids it accepted inside that window (the same event twice).
"""
from __future__ import annotations

import hashlib
import hmac
import json
import sys
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

WINDOW_S = 60


class Refused(Exception):
    pass


class Receiver:
    def __init__(self, secret: bytes, window_s: float = WINDOW_S):
        self.secret, self.window_s = secret.strip(), window_s
        self.seen: dict[str, float] = {}          # event id -> when accepted

    def accept(self, headers, body: bytes, now: float | None = None) -> dict:
        """The event, or Refused with the reason."""
        now = time.time() if now is None else now
        stamp = headers.get("X-Edge-Face-Timestamp", "")
        signature = headers.get("X-Edge-Face-Signature", "")
        expected = "sha256=" + hmac.new(self.secret, stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(signature.encode(), expected.encode()):
            raise Refused("bad signature")
        if not stamp.isdigit() or abs(now - int(stamp)) > self.window_s:
            raise Refused("stale or missing timestamp")
        event = json.loads(body)
        self.seen = {key: at for key, at in self.seen.items() if now - at <= self.window_s}
        if event["event_id"] in self.seen:
            raise Refused("replayed event")
        self.seen[event["event_id"]] = now
        return event


def handler_for(receiver: Receiver, on_event):
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            try:
                on_event(receiver.accept(self.headers, body))
                self.send_response(204)
            except (Refused, ValueError, KeyError) as err:
                self.send_response(403)
                print(f"refused: {err}", file=sys.stderr)
            self.end_headers()

        def log_message(self, *args):
            pass
    return Handler


if __name__ == "__main__":
    receiver = Receiver(Path(sys.argv[1]).read_bytes())
    server = HTTPServer(("127.0.0.1", int(sys.argv[2])), handler_for(receiver, lambda e: print("open:", e)))
    server.serve_forever()
