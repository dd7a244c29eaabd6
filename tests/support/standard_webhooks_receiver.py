"""A webhook receiver that verifies every request with the Standard Webhooks
reference library (PyPI `standardwebhooks`), for tests/routing/batching.rs.

Usage: standard_webhooks_receiver.py SECRET FAIL_EVERY

Listens on 127.0.0.1, port 0, and prints `PORT <n>` first. Then, for each
POST, one JSON line on stdout:
  {"status": 204, "webhook_id": ..., "body": <the verified, parsed body>}
  {"status": 503, "webhook_id": ..., "body": ...}   (every FAIL_EVERY-th request,
                                                    verified first; 0 = never)
  {"status": 400, "error": "..."}                   (verification failed)
"""

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks import Webhook

SECRET = sys.argv[1]
FAIL_EVERY = int(sys.argv[2])
WEBHOOK = Webhook(SECRET)
LOCK = threading.Lock()
COUNT = [0]


def emit(record):
    with LOCK:
        sys.stdout.write(json.dumps(record) + "\n")
        sys.stdout.flush()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        length = int(self.headers.get("content-length", "0"))
        data = self.rfile.read(length)
        headers = {k: v for k, v in self.headers.items()}
        try:
            body = WEBHOOK.verify(data, headers)
        except Exception as e:  # the library's verification errors, bad JSON
            emit({"status": 400, "error": f"{type(e).__name__}: {e}"})
            return self.answer(400)
        with LOCK:
            COUNT[0] += 1
            n = COUNT[0]
        status = 503 if FAIL_EVERY and n % FAIL_EVERY == 0 else 204
        emit({"status": status, "webhook_id": headers.get("webhook-id"), "body": body})
        self.answer(status)

    def answer(self, status):
        self.send_response(status)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
emit_port = f"PORT {server.server_address[1]}"
sys.stdout.write(emit_port + "\n")
sys.stdout.flush()
server.serve_forever()
