#!/usr/bin/env python3
"""Opt-in (not part of .ci/run, it takes about 5 minutes): a real Prometheus (Debian's
`prometheus` package) scrapes a real `dcrship run` through an outage and a 403 window, and the
PromQL an operator would use is printed with the values seen.

    apt-get install --no-install-recommends prometheus
    python3 .ci/prometheus_outage.py target/debug/dcrship

A fake ingestion endpoint on 127.0.0.1 answers 204, then 503 (the outage), 204, 403, 204; a
writer appends lines to a tailed file all along. Prometheus scrapes every 2 s and evaluates
deploy/prometheus/alerts.yml. Everything listens on loopback only and is stopped at the end.
"""

import gzip
import http.server
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request

DCR = "dcr-00000000000000000000000000000001"
STREAM = "Custom-Outage_CL"
PHASES = [("ok", 40), ("outage", 40), ("ok", 30), ("forbidden", 40), ("ok", 40)]


class State:
    mode = "ok"
    rows = 0
    requests = 0
    by_status = {}


class Fake(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        State.requests += 1
        status = {"outage": 503, "forbidden": 403}.get(State.mode, 204)
        State.by_status[status] = State.by_status.get(status, 0) + 1
        rid = f"5e7a0000-0000-4000-8000-{State.requests:012x}"
        if State.mode == "outage":
            self.reply(503, rid, b"")
            return
        if State.mode == "forbidden":
            err = {"error": {"code": "OperationFailed", "message": "The authentication token provided does not have access to ingest data for the data collection rule"}}
            self.reply(403, rid, json.dumps(err).encode(), [("x-ms-error-code", "OperationFailed")])
            return
        rows = json.loads(gzip.decompress(body))
        State.rows += len(rows)
        self.reply(204, rid, b"")

    def reply(self, status, rid, body, headers=()):
        self.send_response(status)
        self.send_header("x-ms-request-id", rid)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def free_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def query(prom, expr, at=None):
    params = {"query": expr}
    if at is not None:
        params["time"] = str(at)
    url = f"http://{prom}/api/v1/query?" + urllib.parse.urlencode(params)
    with urllib.request.urlopen(url, timeout=10) as r:
        data = json.load(r)
    return [(m["metric"], m["value"][1]) for m in data["data"]["result"]]


def main():
    binary = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "target/debug/dcrship")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    work = tempfile.mkdtemp(prefix="dcrship-prom-")
    fake_port, agent_port, prom_port = free_port(), free_port(), free_port()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", fake_port), Fake)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    log = os.path.join(work, "app.log")
    open(log, "w").close()
    agent = subprocess.Popen(
        [binary, "run", "--endpoint", f"http://127.0.0.1:{fake_port}", "--dcr", DCR,
         "--stream", STREAM, "--auth", "static", "--path", log, "--start-at", "beginning",
         "--state-dir", os.path.join(work, "state"), "--http-listen", f"127.0.0.1:{agent_port}",
         "--batch-timeout", "500ms", "--probe-interval", "10s", "--shutdown-timeout", "2s"],
        env={**os.environ, "DCRSHIP_ACCESS_TOKEN": "outage-test-token"},
        stderr=open(os.path.join(work, "agent.log"), "w"))
    rules = os.path.join(work, "alerts.yml")
    shutil.copy(os.path.join(root, "deploy/prometheus/alerts.yml"), rules)
    with open(os.path.join(work, "prometheus.yml"), "w") as f:
        f.write(f"global:\n  scrape_interval: 2s\n  evaluation_interval: 2s\n"
                f"rule_files: [{rules!r}]\n"
                f"scrape_configs:\n  - job_name: dcrship\n    static_configs:\n"
                f"      - targets: ['127.0.0.1:{agent_port}']\n")
    prom = subprocess.Popen(
        ["prometheus", f"--config.file={work}/prometheus.yml", f"--storage.tsdb.path={work}/tsdb",
         f"--web.listen-address=127.0.0.1:{prom_port}"],
        stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "prometheus.log"), "w"))
    promaddr = f"127.0.0.1:{prom_port}"
    stop = threading.Event()
    written = [0]

    def writer():
        with open(log, "a") as f:
            while not stop.is_set():
                for _ in range(20):
                    written[0] += 1
                    f.write(f"line {written[0]:07d} of the outage test\n")
                f.flush()
                time.sleep(0.2)

    threading.Thread(target=writer, daemon=True).start()
    marks = []
    try:
        for mode, seconds in PHASES:
            State.mode = mode
            marks.append((mode, time.time()))
            print(f"phase {mode} for {seconds}s", flush=True)
            time.sleep(seconds)
        stop.set()
        time.sleep(15)
        end = time.time()
        out = subprocess.run(["promtool", "check", "metrics"], input=urllib.request.urlopen(
            f"http://127.0.0.1:{agent_port}/metrics").read(), capture_output=True)
        print("promtool check metrics:", "ok" if out.returncode == 0 else out.stdout.decode() + out.stderr.decode())
        t_outage = marks[1][1]
        t_forbidden = marks[3][1]
        sel = '{job="dcrship",output="default"}'

        def show(label, expr, at=None):
            v = query(promaddr, expr, at)
            print(f"{label}\n  {expr}\n  = {[(dict((k, m[k]) for k in m if k not in ('job', 'instance', 'output')), val) for m, val in v]}")

        print(f"\nrows written {written[0]}, rows the fake accepted {State.rows}, requests {State.requests}, by status {State.by_status}")
        show("backlog at the end (bytes not yet accepted)", f"dcrship_spool_bytes{sel}")
        show("spool files at the end", f"dcrship_spool_disk_bytes{sel}")
        show("backlog at the end of the outage", f"dcrship_spool_bytes{sel}", marks[2][1] - 1)
        show("oldest unsent, peak over the outage", f"max_over_time(dcrship_oldest_unsent_seconds{sel}[{int(marks[2][1]-t_outage)+5}s])", marks[2][1] + 3)
        show("oldest unsent at the end", f"dcrship_oldest_unsent_seconds{sel}")
        show("503s during the outage", f'increase(dcrship_requests_total{{job="dcrship",status="503"}}[{int(marks[2][1]-t_outage)}s])', marks[2][1])
        show("403s during the 403 window (the series starts at 0)", f'increase(dcrship_requests_total{{job="dcrship",status="403"}}[{int(marks[4][1]-t_forbidden)}s])', marks[4][1])
        show("403s counted by the agent in total", f'dcrship_requests_total{{job="dcrship",status="403"}}')
        show("retries by reason", f"sum by (reason) (dcrship_retries_total{sel}) > 0")
        show("state during the 403 window", f"dcrship_output_state{sel} == 1", marks[4][1] - 2)
        show("state at the end", f"dcrship_output_state{sel} == 1")
        show("p50/p95 request latency over the run", f"histogram_quantile(0.95, sum by (le) (increase(dcrship_request_duration_seconds_bucket{sel}[{int(end-marks[0][1])}s])))")
        show("latency buckets (cumulative, end)", f"dcrship_request_duration_seconds_bucket{sel}")
        show("median rows per request", f"histogram_quantile(0.5, sum by (le) (increase(dcrship_request_rows_bucket{sel}[{int(end-marks[0][1])}s])))")
        show("rows delivered", f"dcrship_records_sent_total{sel}")
        show("rows dropped", f"sum(dcrship_records_dropped_total{sel})")
        show("alerts that fired (ALERTS, firing, any time)", f'max_over_time(ALERTS{{alertstate="firing"}}[{int(end-marks[0][1])}s])')
        show("RSS", 'process_resident_memory_bytes{job="dcrship"}')
        show("CPU seconds", 'process_cpu_seconds_total{job="dcrship"}')
    finally:
        stop.set()
        agent.send_signal(signal.SIGTERM)
        prom.send_signal(signal.SIGTERM)
        agent.wait(timeout=20)
        prom.wait(timeout=20)
        server.shutdown()
        print(f"\nagent exit {agent.returncode}; logs in {work}")


if __name__ == "__main__":
    main()
