"""A strict fake of the Logs Ingestion API for benches/e2e.rs (DCRSHIP_BENCH_FAKE=python).

Prints `port N`, answers every POST with 204 after gunzipping it and parsing its JSON (a body over
1,000,000 bytes raw or gzip, or not a JSON array, counts as bad), and when its standard input
closes prints `requests gzip_bytes raw_bytes rows bad` and exits. HTTP/1.1 keep-alive, one thread per connection.
"""

import gzip
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CAP = 1_000_000
stats = {"requests": 0, "gzip": 0, "raw": 0, "rows": 0, "bad": 0}
lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        try:
            raw = gzip.decompress(body)
            rows = json.loads(raw)
            ok = len(body) <= CAP and len(raw) <= CAP and isinstance(rows, list)
        except (OSError, ValueError, EOFError):
            ok, raw, rows = False, b"", []
        with lock:
            stats["requests"] += 1
            stats["gzip"] += len(body)
            stats["raw"] += len(raw)
            if ok:
                stats["rows"] += len(rows)
            else:
                stats["bad"] += 1
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print("port", server.server_address[1], flush=True)
threading.Thread(target=server.serve_forever, daemon=True).start()
sys.stdin.read()
print(*(stats[k] for k in ("requests", "gzip", "raw", "rows", "bad")), flush=True)
