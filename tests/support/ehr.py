"""A small real HTTP server playing three EHRs on one loopback port, for the console's exchange tests: `/ok`
answers a transaction like a FHIR server (every entry 201 Created), `/refusing` refuses it with 422 and an
OperationOutcome pointing into the Bundle, `/down` answers 503 (in maintenance). Searches (the worker looks for
the EHR's own Patient before it writes one) find nothing, but at `/down`. HAPI would accept our Bundles;
these are the failures an admin must see, produced by a real server over a real socket."""
from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def refusal(entries: int) -> dict[str, Any]:
    """What /refusing says: the status of the third entry (the last, in a shorter Bundle) is not allowed."""
    n = min(2, max(entries - 1, 0))
    return {"resourceType": "OperationOutcome", "issue": [
        {"severity": "error", "code": "processing", "diagnostics": f"Unknown code for the status of entry {n + 1}",
         "expression": [f"Bundle.entry[{n}].resource.status"]}]}


MAINTENANCE = {"resourceType": "OperationOutcome", "issue": [
    {"severity": "error", "code": "transient", "diagnostics": "The server is down for maintenance"}]}


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 - the name http.server calls
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        self.server.received.append((self.path, dict(self.headers), body))  # type: ignore[attr-defined]
        if self.path.startswith("/refusing"):
            self._send(422, refusal(len(body.get("entry") or [])))
        elif self.path.startswith("/down"):
            self._send(503, MAINTENANCE)
        else:
            entries = [{"response": {"status": "201 Created", "location": f"{e['resource']['resourceType']}/"
                                     f"srv-{i}/_history/1"}} for i, e in enumerate(body.get("entry") or [])]
            self._send(200, {"resourceType": "Bundle", "type": "transaction-response", "entry": entries})

    def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
        if self.path.startswith("/down"):
            self._send(503, MAINTENANCE)
        else:
            self._send(200, {"resourceType": "Bundle", "type": "searchset", "total": 0})

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/fhir+json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:  # quiet: the tests read what they need
        return


@contextmanager
def ehr_server() -> Iterator[str]:
    """The server's base (`http://127.0.0.1:PORT`); endpoints are base + `/ok`, `/refusing`, `/down`."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.received = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
