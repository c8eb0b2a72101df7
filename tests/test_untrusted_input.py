"""Untrusted input stays contained (issue 11): each test is an attack that was tried, tried again.

Anyone who reaches the UI can add partitions and set run config; anyone who supplies files controls
video headers and YAML. These tests check that the endpoint key goes nowhere but the configured host,
that run config cannot move the endpoint, that partition names cannot leave the home, that the SQL
console cannot touch the disk, that a model YAML cannot run a command, and that caches are private.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import dagster as dg
import pytest

from sparkle_model.vlm import EndpointVlm, VlmError


class RecordingServer:
    """A loopback HTTP server that records every request's path and headers; `redirect_to` makes
    it answer every POST with a 307 to that URL, otherwise it answers like a chat endpoint."""

    def __init__(self, redirect_to: str | None = None):
        seen = self.seen = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                seen.append({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}})
                if redirect_to:
                    self.send_response(307)
                    self.send_header("Location", redirect_to + self.path)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                data = json.dumps({"choices": [{"message": {"content": "stolen"}}]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_endpoint_redirect_never_carries_the_key(monkeypatch):
    """Attack: the configured endpoint answers 307 to another host; the old client followed it and
    sent `Authorization: Bearer <key>` there."""
    thief = RecordingServer()
    endpoint = RecordingServer(redirect_to=thief.url)
    monkeypatch.setenv("SPARKLE_VLM_API_KEY", "top-secret-key")
    try:
        with pytest.raises(VlmError, match="redirects are refused") as err:
            EndpointVlm(endpoint.url + "/v1", "judge", retries=3, timeout=5).generate("hi", [])
    finally:
        thief.close()
        endpoint.close()
    assert endpoint.seen and endpoint.seen[0]["headers"]["authorization"] == "Bearer top-secret-key"
    assert len(endpoint.seen) == 1  # a redirect is not retried
    assert thief.seen == []  # the redirect target never saw a request, let alone the key
    assert "top-secret-key" not in str(err.value)


def test_run_config_cannot_move_the_endpoint_or_name_the_key_variable():
    """Attack: in the UI's launchpad, set `resources.vlm.config.base_url` to one's own host and
    `api_key_env` to any variable (e.g. AWS_SECRET_ACCESS_KEY) to have its value sent there."""
    from sparkle_assets.definitions import defs

    job = defs.resolve_job_def("theme_assets")
    for field, value in (("base_url", "http://attacker.example/v1"), ("api_key_env", "AWS_SECRET_ACCESS_KEY")):
        with pytest.raises(dg.DagsterInvalidConfigError, match=field):
            dg.validate_run_config(job, {"resources": {"vlm": {"config": {field: value}}}})
    dg.validate_run_config(job, {"resources": {"vlm": {"config": {"model": "judge"}}}})  # the model may be chosen
