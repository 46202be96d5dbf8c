"""A small FHIR-like HTTP server on a loopback port for push tests: it records every POST and
answers with the statuses it is given (then 201)."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FhirServer:
    def __init__(self, statuses=()):
        self.received = []  # (path, headers, parsed JSON body)
        self.statuses = list(statuses)
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                server.received.append((self.path, dict(self.headers), json.loads(body)))
                status = server.statuses.pop(0) if server.statuses else 201
                answer = json.dumps({"resourceType": "OperationOutcome", "issue": []}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/fhir+json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/fhir/Bundle"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)
