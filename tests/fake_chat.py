"""A local OpenAI-compatible chat endpoint for tests: every request is recorded and answered by
`respond(prompt, images) -> str` as {"choices": [{"message": {"content": ...}}]}, or, with
`redirect_to`, by a redirect (`status`) to that URL instead."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import numpy as np


def prompt_of(body: dict) -> str:
    """The text of a chat request's messages (string contents and text parts)."""
    parts = []
    for message in (body or {}).get("messages", []):
        content = message.get("content")
        if isinstance(content, str):
            parts.append(content)
        else:
            parts += [c.get("text", "") for c in content or [] if c.get("type") == "text"]
    return "\n".join(parts)


def images_of(body: dict) -> list[np.ndarray]:
    """The RGB images a chat request carries as base64 data URLs."""
    out = []
    for message in (body or {}).get("messages", []):
        for c in message.get("content") if isinstance(message.get("content"), list) else []:
            url = (c.get("image_url") or {}).get("url", "") if c.get("type") == "image_url" else ""
            if url.startswith("data:image/"):
                data = np.frombuffer(base64.b64decode(url.split(",", 1)[1]), np.uint8)
                out.append(cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB))
    return out


class ChatServer:
    """Serves on 127.0.0.1 (a free port) until `close()`; `requests` lists every request received
    (path, JSON body, Authorization and api-key headers)."""

    def __init__(self, respond: Callable[[str, list[np.ndarray]], str], redirect_to: str | None = None,
                 status: int = 302):
        requests = self.requests = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                body = json.loads(raw) if raw else None
                requests.append({"path": self.path, "body": body, "auth": self.headers.get("Authorization"),
                                 "api_key": self.headers.get("api-key")})
                if redirect_to:
                    self.send_response(status)
                    self.send_header("Location", redirect_to + self.path)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                content = respond(prompt_of(body), images_of(body))
                data = json.dumps({"choices": [{"message": {"role": "assistant", "content": content}}]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST  # urllib used to follow a 302 as a GET

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
