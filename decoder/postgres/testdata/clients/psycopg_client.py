#!/usr/bin/python3
"""Drives PostgreSQL through psycopg2 for the parser's wire tests
(decoder/postgres/wire_test.go). argv: host port password. Each step
prints "step <name> <outcome>" so the test can tell what the server
answered."""

import sys

import psycopg2

host, port, password = sys.argv[1], int(sys.argv[2]), sys.argv[3]


def connect(pw):
    return psycopg2.connect(host=host, port=port, dbname="authdb", user="app", password=pw,
                            sslmode="disable", application_name="wire-psycopg2")


def step(name, fn):
    try:
        fn()
        print("step", name, "ok", flush=True)
    except psycopg2.Error as e:
        print("step", name, e.pgcode, flush=True)


def bad_login():
    connect("wrong-" + password).close()


step("bad-password", bad_login)
conn = connect(password)
cur = conn.cursor()


def login():
    cur.execute("SELECT id, role FROM users WHERE username = %s AND password_hash = crypt(%s, password_hash)",
                ("alice", "correct-horse"))
    assert cur.fetchone() is not None
    conn.rollback()


def guest_document():
    cur.execute("SET LOCAL ROLE app_guest")
    cur.execute("SELECT set_config('app.user', %s, true)", ("bob",))
    cur.execute("SELECT id, title FROM documents WHERE id = %s", (2,))


def rls_hidden():
    conn.rollback()
    cur.execute("SET LOCAL ROLE app_reader")
    cur.execute("SELECT set_config('app.user', %s, true)", ("alice",))
    cur.execute("SELECT id, title FROM documents WHERE id = %s", (2,))
    assert cur.fetchone() is None
    cur.execute("SELECT id, title FROM documents")
    assert len(cur.fetchall()) == 1
    conn.commit()


def syntax_error():
    cur.execute("SELEC 'syntax-secret-1' FROM users")


def literals():
    conn.rollback()
    conn.autocommit = True
    cur.execute("SELECT $tag$dollar-secret-2$tag$, E'escape-\\'secret-3', 42, 4.5e-3, "
                "U&'unicode-secret-4' /* comment-secret-5 */ -- line-secret-6\n FROM users LIMIT 1")
    cur.fetchall()
    cur.execute("SELECT 1; SELECT username FROM users WHERE username = 'multi-secret-7'")
    cur.fetchall()


step("login", login)
step("guest-document", guest_document)
step("rls-hidden", rls_hidden)
step("syntax-error", syntax_error)
step("literals", literals)
conn.close()
