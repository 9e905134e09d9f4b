#!/usr/bin/python3
"""An uninstrumented login/authorize backend over PostgreSQL, for the
three-layer test flow (test/servers/chain/README.md): http.server's
ThreadingHTTPServer (a thread per request) and psycopg2.

Configuration comes from the environment: PORT (0: a free one, printed as
"listening <port>" on stdout), HOST, DB_HOST, DB_PORT, DB_NAME, DB_USER,
DB_PASSWORD, DB_POOL (connections kept and shared by the request threads;
0: a new connection per request), POLL_MS (a background thread queries
every POLL_MS milliseconds outside any request; 0: off). One line per
request goes to stderr: method, path, status and the traceparent received.
"""

import base64
import hashlib
import hmac
import json
import os
import queue
import re
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg2

JWT_KEY = b"authprobe-test-key"
# The database role a request runs its document query as, by the caller's
# token role: readers see their own documents (row-level security), guests
# may read none (42501).
DB_ROLES = {"user": "app_reader", "guest": "app_guest"}
DOC_PATH = re.compile(r"^/api/documents/([0-9]{1,9})$")
OWNER_PATH = re.compile(r"^/api/documents/([0-9]{1,9})/owner$")


def connect():
    return psycopg2.connect(
        host=os.environ.get("DB_HOST", "127.0.0.1"),
        port=int(os.environ.get("DB_PORT", "5432")),
        dbname=os.environ.get("DB_NAME", "authdb"),
        user=os.environ.get("DB_USER", "app"),
        password=os.environ.get("DB_PASSWORD", ""),
        application_name="chain-python",
        sslmode="disable",
        connect_timeout=5,
    )


class Pool:
    """A blocking pool of at most size connections, opened on demand; size 0
    opens and closes one per use."""

    def __init__(self, size):
        self.size = size
        self.idle = queue.LifoQueue()
        self.slots = threading.BoundedSemaphore(size) if size > 0 else None

    def get(self):
        if self.slots is None:
            return connect()
        self.slots.acquire()
        try:
            return self.idle.get_nowait()
        except queue.Empty:
            try:
                return connect()
            except Exception:
                self.slots.release()
                raise

    def put(self, conn, broken=False):
        if self.slots is None or broken or conn.closed:
            conn.close()
            if self.slots is not None:
                self.slots.release()
            return
        self.idle.put(conn)
        self.slots.release()


POOL = None  # set in main


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def issue_token(sub, role):
    now = int(time.time())
    header = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = b64url(json.dumps({"sub": sub, "role": role, "roles": [role], "iat": now, "exp": now + 3600}).encode())
    signing = (header + "." + payload).encode()
    return header + "." + payload + "." + b64url(hmac.new(JWT_KEY, signing, hashlib.sha256).digest())


def verify_token(token):
    """The claims of a valid, unexpired HS256 token, else None."""
    try:
        header, payload, sig = token.split(".")
        want = hmac.new(JWT_KEY, (header + "." + payload).encode(), hashlib.sha256).digest()
        if not hmac.compare_digest(want, unb64url(sig)):
            return None
        claims = json.loads(unb64url(payload))
        if claims.get("exp", 0) < time.time() or not isinstance(claims.get("sub"), str):
            return None
        return claims
    except (ValueError, TypeError):
        return None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass  # one line per request from reply() instead

    def reply(self, status, obj):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        sys.stderr.write("request %s %s %d traceparent=%s\n" % (
            self.command, self.path, status, self.headers.get("traceparent") or "-"))
        sys.stderr.flush()

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n > 0 else b""

    def do_GET(self):
        self.body()
        if self.path == "/health":
            return self.reply(200, {"status": "ok"})
        if self.path == "/stats":
            return self.stats()
        m = DOC_PATH.match(self.path)
        if m:
            return self.document(int(m.group(1)))
        self.reply(404, {"error": "not_found"})

    def do_POST(self):
        raw = self.body()
        if self.path == "/login":
            return self.login(raw)
        m = OWNER_PATH.match(self.path)
        if m:
            return self.set_owner(int(m.group(1)), raw)
        self.reply(404, {"error": "not_found"})

    def stats(self):
        """A query outside any auth route."""
        try:
            conn = POOL.get()
        except psycopg2.Error:
            return self.reply(503, {"error": "db_unavailable"})
        broken = False
        try:
            cur = conn.cursor()
            cur.execute("SELECT count(*) AS user_count FROM users")
            n = cur.fetchone()[0]
            conn.rollback()
        except psycopg2.Error:
            broken = True
            return self.reply(503, {"error": "db_error"})
        finally:
            POOL.put(conn, broken)
        self.reply(200, {"users": n})

    def login(self, raw):
        ctype = self.headers.get("Content-Type", "")
        try:
            if ctype.startswith("application/json"):
                form = json.loads(raw)
                user, password = form["username"], form["password"]
            else:
                form = urllib.parse.parse_qs(raw.decode(), keep_blank_values=True)
                user, password = form["username"][0], form["password"][0]
            if not isinstance(user, str) or not isinstance(password, str):
                raise ValueError("fields")
        except (ValueError, KeyError, IndexError, TypeError, UnicodeDecodeError):
            return self.reply(400, {"error": "bad_request"})
        try:
            conn = POOL.get()
        except psycopg2.Error:
            return self.reply(503, {"error": "db_unavailable"})
        broken = False
        try:
            cur = conn.cursor()
            cur.execute("SELECT id, role FROM users WHERE username = %s AND password_hash = crypt(%s, password_hash)",
                        (user, password))
            row = cur.fetchone()
            conn.rollback()
        except psycopg2.Error:
            broken = True
            return self.reply(503, {"error": "db_error"})
        finally:
            POOL.put(conn, broken)
        if row is None:
            return self.reply(401, {"error": "invalid_credentials"})
        self.reply(200, {"token": issue_token(user, row[1])})

    def claims(self):
        """The claims of the request's bearer token, else None."""
        auth = self.headers.get("Authorization", "")
        return verify_token(auth[7:]) if auth.startswith("Bearer ") else None

    def as_caller(self, claims, work):
        """Runs work(cursor) in one transaction as the database role of the
        caller's token role, with app.user set to its subject, and returns
        (work's result, None), or (None, status) when the database refused
        (403: 42501, a missing privilege or a row-level security policy) or
        failed (503)."""
        role = DB_ROLES.get(claims.get("role"), "app_guest")
        try:
            conn = POOL.get()
        except psycopg2.Error:
            return None, 503
        broken = False
        try:
            cur = conn.cursor()
            cur.execute("SET LOCAL ROLE " + role)  # a fixed name from DB_ROLES
            cur.execute("SELECT set_config('app.user', %s, true)", (claims["sub"],))
            result = work(cur)
            conn.commit()
            return result, None
        except psycopg2.Error as e:
            try:
                conn.rollback()
            except psycopg2.Error:
                broken = True
            if e.pgcode == "42501":
                return None, 403
            broken = True
            return None, 503
        finally:
            POOL.put(conn, broken)

    def document(self, doc_id):
        claims = self.claims()
        if claims is None:
            return self.reply(401, {"error": "unauthorized"})

        def read(cur):
            cur.execute("SELECT id, title FROM documents WHERE id = %s", (doc_id,))
            return cur.fetchone()
        row, status = self.as_caller(claims, read)
        if status is not None:
            return self.reply(status, {"error": "forbidden" if status == 403 else "db_error"})
        if row is None:
            # Row-level security hid it (or it does not exist).
            return self.reply(403, {"error": "forbidden"})
        self.reply(200, {"id": row[0], "title": row[1]})

    def set_owner(self, doc_id, raw):
        """POST /api/documents/{id}/owner with a form owner=NAME: the
        update row-level security refuses (42501) when NAME is not the
        caller."""
        claims = self.claims()
        if claims is None:
            return self.reply(401, {"error": "unauthorized"})
        try:
            owner = urllib.parse.parse_qs(raw.decode(), keep_blank_values=True)["owner"][0]
        except (KeyError, IndexError, UnicodeDecodeError):
            return self.reply(400, {"error": "bad_request"})

        def update(cur):
            cur.execute("UPDATE documents SET owner = %s WHERE id = %s", (owner, doc_id))
            return cur.rowcount
        n, status = self.as_caller(claims, update)
        if status is not None:
            return self.reply(status, {"error": "forbidden" if status == 403 else "db_error"})
        if n == 0:
            # Row-level security hid it (or it does not exist).
            return self.reply(403, {"error": "forbidden"})
        self.reply(200, {"id": doc_id})


def poll(interval):
    """Queries outside any request, on a connection of its own."""
    conn = None
    while True:
        time.sleep(interval)
        try:
            if conn is None or conn.closed:
                conn = connect()
                conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("SELECT count(*) AS active_users FROM users")
                cur.fetchone()
        except psycopg2.Error:
            if conn is not None:
                conn.close()
            conn = None


def main():
    global POOL
    POOL = Pool(int(os.environ.get("DB_POOL", "4")))
    poll_ms = int(os.environ.get("POLL_MS", "1000"))
    if poll_ms > 0:
        threading.Thread(target=poll, args=(poll_ms / 1000.0,), daemon=True).start()
    server = ThreadingHTTPServer((os.environ.get("HOST", "127.0.0.1"), int(os.environ.get("PORT", "0"))), Handler)
    server.daemon_threads = True
    print("listening %d" % server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
