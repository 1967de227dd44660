"""Serve a minimal stand-in for the Criteo token and contact-list endpoints on loopback.

The benchmark normally runs against `audience-sync sandbox`. This stub lets the Python
jobs and the harness be tested before that binary exists (`run_comparison.py --server
stub`). It implements only what the jobs call: the client-credentials token and PATCH of
a contact list, with the sandbox's credentials and audience. It keeps each audience's
members in memory so that it does about the work a real fake does per identifier.

    python benches/compare/stub_criteo.py --listen 127.0.0.1:8080
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import secrets
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

CLIENT_ID = "sandbox-client"
CLIENT_SECRET = "sandbox-secret"
AUDIENCE_ID = "987654"
MAX_IDENTIFIERS = 50_000
CONTACT_LIST_PATH = re.compile(r"^/2026-07/marketing-solutions/audience-segments/(\d+)/contact-list$")
VALID_EMAIL_IDENTIFIER = re.compile(r"^[0-9a-f]{64}$|^[0-9a-f]{32}$|^[^@\s]+@[^@\s]+\.[^@\s]+$")

log = logging.getLogger("stub_criteo")


class StubState:
    def __init__(self) -> None:
        self.tokens: set[str] = set()
        self.members: dict[str, set[str]] = {AUDIENCE_ID: set()}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    state: StubState

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - signature fixed by the base class
        log.debug(format, *args)

    def do_POST(self) -> None:  # noqa: N802 - name fixed by the base class
        if self.path != "/oauth2/token":
            return self.send_json(404, {"errors": [{"code": "not-found"}]})
        form = parse_qs(self.read_body().decode())
        if form.get("grant_type") != ["client_credentials"]:
            return self.send_json(400, {"error": "unsupported_grant_type"})
        if form.get("client_id") != [CLIENT_ID] or form.get("client_secret") != [CLIENT_SECRET]:
            return self.send_json(401, {"error": "invalid_client"})
        token = secrets.token_urlsafe(32)
        self.state.tokens.add(token)
        self.send_json(200, {"access_token": token, "token_type": "Bearer", "refresh_token": None, "expires_in": 900})

    def do_PATCH(self) -> None:  # noqa: N802 - name fixed by the base class
        body = self.read_body()
        match = CONTACT_LIST_PATH.match(self.path)
        if not match:
            return self.send_json(404, {"errors": [{"code": "not-found"}]})
        token = self.headers.get("Authorization", "").removeprefix("Bearer ")
        if token not in self.state.tokens:
            return self.send_json(401, {"errors": [{"type": "authorization", "code": "authorization-token-invalid"}]})
        members = self.state.members.get(match.group(1))
        if members is None:
            return self.send_json(404, {"errors": [{"type": "validation", "code": "audience-invalid"}]})

        try:
            attributes = json.loads(body)["data"]["attributes"]
            operation, identifiers = attributes["operation"], attributes["identifiers"]
        except (ValueError, KeyError, TypeError):
            return self.send_json(400, {"errors": [{"type": "validation", "code": "invalid"}]})
        if not isinstance(identifiers, list) or not all(isinstance(i, str) for i in identifiers):
            return self.send_json(400, {"errors": [{"type": "validation", "code": "invalid"}]})
        if operation not in ("add", "remove") or attributes.get("identifierType") != "email":
            return self.send_json(400, {"errors": [{"type": "validation", "code": "invalid"}]})
        if len(identifiers) > MAX_IDENTIFIERS:
            return self.send_json(400, {"errors": [{"type": "validation", "code": "too-many-identifiers"}]})

        if identifiers != sorted(identifiers):
            log.warning("%s request with %d identifiers that are not sorted", operation, len(identifiers))
        valid = [i for i in identifiers if VALID_EMAIL_IDENTIFIER.match(i)]
        if operation == "add":
            members.update(valid)
        else:
            members.difference_update(valid)
        response = {
            "contactListId": int(match.group(1)),
            "operation": operation,
            "identifierType": "email",
            "nbValidIdentifiers": len(valid),
            "nbInvalidIdentifiers": len(identifiers) - len(valid),
            "sampleInvalidIdentifiers": [i for i in identifiers if i not in valid][:10] if len(valid) < len(identifiers) else [],
        }
        self.send_json(200, {"data": {"type": "ContactlistAmendment", "attributes": response}, "errors": [], "warnings": []})

    def read_body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length", 0)))

    def send_json(self, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="127.0.0.1:8080", help="loopback address and port to listen on")
    args = parser.parse_args()
    host, port = args.listen.rsplit(":", 1)
    if not host.startswith("127.") and host != "localhost":
        parser.error(f"invalid --listen {args.listen}: the stub only listens on loopback addresses")

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    Handler.state = StubState()
    server = ThreadingHTTPServer((host, int(port)), Handler)
    log.info("listening on http://%s:%s", host, port)
    server.serve_forever()


if __name__ == "__main__":
    main()
