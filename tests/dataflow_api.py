"""A stand-in for the Dataflow jobs API on loopback, for the launcher's submit path.

No emulator of Dataflow exists, and nothing here can reach Google Cloud. Beam's
own ``DataflowRunner`` talks to it over REST (``--dataflow_endpoint
http://localhost:PORT``, which Beam serves over plain REST), so the test
sees the very job request a real submission sends, and the launcher gets a job
id back. Jobs stay pending: nothing runs them.
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class DataflowApiStandIn:
    """Accepts ``projects.locations.jobs.create`` and ``get``; ``jobs`` holds each created job's request."""

    def __init__(self):
        self.jobs: dict = {}
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _reply(self, body: dict, status: int = 200):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):
                match = re.fullmatch(r"/v1b3/projects/([^/]+)/locations/([^/]+)/jobs(\?.*)?", self.path)
                if not match:
                    return self._reply({"error": {"code": 404, "message": self.path}}, 404)
                job = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                job_id = f"2026-12-03_00_00_00-{len(owner.jobs) + 1}"
                owner.jobs[job_id] = job
                self._reply({**job, "id": job_id, "projectId": match.group(1), "location": match.group(2),
                             "currentState": "JOB_STATE_PENDING"})

            def do_GET(self):
                match = re.fullmatch(r"/v1b3/projects/([^/]+)/locations/([^/]+)/jobs/([^/?]+)(\?.*)?", self.path)
                if not match or match.group(3) not in owner.jobs:
                    return self._reply({"error": {"code": 404, "message": self.path}}, 404)
                self._reply({"id": match.group(3), "projectId": match.group(1), "location": match.group(2),
                             "name": owner.jobs[match.group(3)].get("name", ""),
                             "currentState": "JOB_STATE_PENDING"})

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://localhost:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self):
        self._server.shutdown()
        self._server.server_close()
