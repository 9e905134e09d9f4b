#!/usr/bin/env python3
"""An uninstrumented login service for authprobe's end-to-end tests.

Standard library only. Usage: login_server.py [PORT]  (or env PORT; HOST
defaults to 127.0.0.1). Port 0 picks a free port; the real one is printed
as "listening <port>" on stdout once the socket accepts connections.
TLS_CERT and TLS_KEY (PEM files) make it serve HTTPS (the ssl module,
the system's shared libssl); each connection's handshake runs in its own
thread, explicitly (SSL_do_handshake) before the first request is read.
With TLS_LIBSSL_DIR as well (a directory with libssl.so.1.1 and
libcrypto.so.1.1), HTTPS goes through that OpenSSL 1.1 by ctypes instead
(libssl_tls.py) and the ssl module is never imported.
SLOW_MS (default 0) delays every /login answer by that many milliseconds:
a slow replica for the latency-anomaly test (test/pipeline).

The routes and answers are the same in every language under test/servers/;
see test/servers/README.md.
"""

import base64
import hashlib
import hmac
import json
import os
import secrets
import sys
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

USERS = {"alice": ("correct-horse", "user"), "bob": ("hunter2", "guest")}
CLIENT_ID, CLIENT_SECRET = "svc", "s3cret"
AUTH_CODE, REFRESH_TOKEN = "good-code", "good-refresh"
# Tokens are signed so they look real; no route verifies them.
JWT_KEY = b"authprobe-test-key"
LOGIN_DELAY = int(os.environ.get("SLOW_MS", "0")) / 1000.0
# Marks every answer of the login handler, so a test can tell a request the
# server routed to it from one it refused or routed elsewhere.
LOGIN_MARKER = ("X-Login-Handler", "1")


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def make_jwt(sub, role):
    now = int(time.time())
    header = {"alg": "HS256", "typ": "JWT"}
    payload = {"sub": sub, "role": role, "roles": [role], "iat": now, "exp": now + 3600}
    signing_input = (
        b64url(json.dumps(header, separators=(",", ":")).encode())
        + "."
        + b64url(json.dumps(payload, separators=(",", ":")).encode())
    )
    sig = hmac.new(JWT_KEY, signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + b64url(sig)


def jwt_payload(token):
    """Decodes a JWT payload without verifying it; None when malformed."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        raw = base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4))
        payload = json.loads(raw)
    except ValueError:
        return None
    return payload if isinstance(payload, dict) else None


def has_role(payload, role):
    roles = payload.get("roles")
    return payload.get("role") == role or (isinstance(roles, list) and role in roles)


def check_password(username, password):
    user = USERS.get(username)
    return user is not None and hmac.compare_digest(user[0], password)


class Handler(BaseHTTPRequestHandler):
    # HTTP/1.1 keeps connections alive and lets clients pipeline.
    protocol_version = "HTTP/1.1"
    server_version = "login-server-python"
    sys_version = ""

    def setup(self):
        if hasattr(self.request, "do_handshake"):  # HTTPS
            self.request.do_handshake()
        super().setup()

    def log_message(self, fmt, *args):
        pass  # stay quiet: stdout carries only the "listening" line

    # --- plumbing ---

    def read_body(self):
        """Reads the whole request body so the next request on the
        connection starts at the right byte (keep-alive, pipelining)."""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def send(self, status, obj=None, headers=()):
        body = b"" if obj is None else json.dumps(obj).encode()
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        if status != 204:
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body:
            self.wfile.write(body)

    def fields(self, body):
        """Returns the body's fields as a dict of strings, or None when a
        JSON body is malformed."""
        ctype = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if ctype == "application/json":
            try:
                obj = json.loads(body or b"null")
            except ValueError:
                return None
            if not isinstance(obj, dict):
                return None
            return {k: v for k, v in obj.items() if isinstance(v, str)}
        pairs = urllib.parse.parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
        return dict(pairs)

    def dispatch(self):
        body = self.read_body()
        path = urllib.parse.urlsplit(self.path).path
        method = self.command
        if path == "/login":
            return self.login(body) if method == "POST" else self.not_allowed()
        if path.startswith("/api/"):
            return self.api(path)
        if path == "/basic":
            return self.basic() if method == "GET" else self.not_allowed()
        if path == "/oauth/token":
            return self.token(body) if method == "POST" else self.not_allowed()
        if path == "/logout":
            if method != "POST":
                return self.not_allowed()
            return self.send(204, headers=[("Set-Cookie", "session=; Max-Age=0; Path=/")])
        if path == "/health":
            return self.send(200, {"status": "ok"})
        if path == "/public" or path.startswith("/public/"):
            return self.send(200, {"path": path, "client": self.client_address[0]})
        return self.send(404, {"error": "not_found"})

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = dispatch

    def not_allowed(self):
        self.send(405, {"error": "method_not_allowed"})

    # --- routes ---

    def login(self, body):
        if LOGIN_DELAY:
            time.sleep(LOGIN_DELAY)

        f = self.fields(body)
        username, password = (f or {}).get("username", ""), (f or {}).get("password", "")
        # The marker says "nouser" when no username reached the handler
        # (a body the server framed differently from what was sent).
        marker = LOGIN_MARKER if username else (LOGIN_MARKER[0], "nouser")

        def send(status, obj, headers=()):
            self.send(status, obj, [marker, *headers])

        if f is None:
            return send(400, {"error": "bad_request"})
        if username == "locked-user":
            return send(423, {"error": "account_locked"})
        if username == "ratelimited":
            return send(429, {"error": "rate_limited"}, [("Retry-After", "30")])
        if not check_password(username, password):
            return send(401, {"error": "invalid_credentials"})
        session = secrets.token_hex(16)
        send(
            200,
            {"token": make_jwt(username, USERS[username][1])},
            [("Set-Cookie", "session=%s; Path=/; HttpOnly" % session)],
        )

    def api(self, path):
        auth = self.headers.get("Authorization", "")
        if not auth.startswith("Bearer "):
            return self.send(401, {"error": "unauthorized"}, [("WWW-Authenticate", "Bearer")])
        payload = jwt_payload(auth[len("Bearer "):].strip())
        if payload is None:
            return self.send(401, {"error": "invalid_token"}, [("WWW-Authenticate", "Bearer")])
        if "admin" in path or has_role(payload, "guest"):
            return self.send(403, {"error": "forbidden"})
        self.send(200, {"ok": True, "path": path})

    def basic(self):
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            try:
                user, _, password = base64.b64decode(auth[6:].strip()).decode().partition(":")
            except ValueError:
                user, password = "", ""
            if user == "alice" and check_password(user, password):
                return self.send(200, {"ok": True})
        self.send(401, {"error": "unauthorized"}, [("WWW-Authenticate", 'Basic realm="test"')])

    def token(self, body):
        f = dict(urllib.parse.parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        grant = f.get("grant_type", "")
        if grant == "password":
            ok, sub = check_password(f.get("username", ""), f.get("password", "")), f.get("username", "")
        elif grant == "client_credentials":
            cid, csecret = f.get("client_id", ""), f.get("client_secret", "")
            auth = self.headers.get("Authorization", "")
            if auth.startswith("Basic "):
                try:
                    cid, _, csecret = base64.b64decode(auth[6:].strip()).decode().partition(":")
                except ValueError:
                    cid, csecret = "", ""
            if not (cid == CLIENT_ID and hmac.compare_digest(csecret, CLIENT_SECRET)):
                return self.send(401, {"error": "invalid_client"})
            ok, sub = True, cid
        elif grant == "authorization_code":
            ok, sub = f.get("code") == AUTH_CODE, "alice"
        elif grant == "refresh_token":
            ok, sub = f.get("refresh_token") == REFRESH_TOKEN, "alice"
        else:
            return self.send(400, {"error": "unsupported_grant_type"})
        if not ok:
            return self.send(400, {"error": "invalid_grant"})
        role = USERS[sub][1] if sub in USERS else "service"
        self.send(
            200,
            {"access_token": make_jwt(sub, role), "token_type": "Bearer", "expires_in": 3600},
            [("Cache-Control", "no-store")],
        )


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128


def main():
    port = int(sys.argv[1] if len(sys.argv) > 1 else os.environ.get("PORT", "0"))
    host = os.environ.get("HOST", "127.0.0.1")
    server = Server((host, port), Handler)
    cert, key = os.environ.get("TLS_CERT"), os.environ.get("TLS_KEY")
    libssl_dir = os.environ.get("TLS_LIBSSL_DIR")
    if cert and key and libssl_dir:
        import libssl_tls

        version = libssl_tls.serve(server, libssl_dir, cert, key)
        print("tls", version, file=sys.stderr, flush=True)
    elif cert and key:
        import ssl

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        server.socket = ctx.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
    print("listening", server.server_address[1], flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
