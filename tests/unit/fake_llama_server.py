#!/usr/bin/env python3
"""A stand-in for llama-server in unit tests, steered by FAKE_LLAMA_MODE:

ok (default)   print like llama-server, answer /health 503 for FAKE_LOAD_S seconds, then 200; serve /completion
exit:TEXT      print TEXT and exit 1 (to test crash diagnoses)
stall          print one line, then nothing, never listen
spam           print FAKE_SPAM_MB megabytes of log lines first, then behave like ok

It writes its argv as JSON to FAKE_ARGV_FILE when set, and honours --port and --api-key.
"""

from __future__ import annotations

import json
import os
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

args = sys.argv[1:]
if os.environ.get("FAKE_ARGV_FILE"):
    with open(os.environ["FAKE_ARGV_FILE"], "w") as f:
        json.dump({"argv": args, "pid": os.getpid()}, f)
if "--version" in args:
    print("version: 1 (fake)")
    sys.exit(0)

mode = os.environ.get("FAKE_LLAMA_MODE", "ok")
print("fake llama-server starting", flush=True)
if mode.startswith("exit:"):
    print(mode[5:], flush=True)
    sys.exit(1)
if mode == "stall":
    time.sleep(3600)
if mode == "spam":
    line = "x" * 1023 + "\n"
    for _ in range(int(float(os.environ.get("FAKE_SPAM_MB", "11")) * 1024)):
        sys.stdout.write(line)
    sys.stdout.flush()

port = int(args[args.index("--port") + 1])
key = args[args.index("--api-key") + 1] if "--api-key" in args else None
ready_at = time.monotonic() + float(os.environ.get("FAKE_LOAD_S", "0.3"))


class Handler(BaseHTTPRequestHandler):
    def _send(self, code: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path == "/health":
            if time.monotonic() < ready_at:
                self._send(503, {"error": {"code": 503, "message": "Loading model"}})
            else:
                self._send(200, {"status": "ok"})
        else:
            self._send(404, {})

    def do_POST(self) -> None:
        if key and self.headers.get("Authorization") != f"Bearer {key}":
            self._send(401, {"error": {"code": 401, "message": "Invalid API Key"}})
            return
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        n = int(body.get("n_predict", 4))
        self._send(
            200,
            {
                "content": "ab" * n,
                "tokens_predicted": n,
                "stop_type": "limit",
                "timings": {"predicted_per_second": 100.0},
            },
        )

    def log_message(self, *a: object) -> None:
        print("request", *a, flush=True)


httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
print(f"main: server is listening on http://127.0.0.1:{port}", flush=True)
httpd.serve_forever()
