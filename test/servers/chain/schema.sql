-- The database of the three-layer test flow (test/servers/chain/README.md):
-- loaded by the PostgreSQL superuser into a fresh database.

CREATE EXTENSION pgcrypto;
CREATE EXTENSION pg_stat_statements;

-- The backends log in as app. NOINHERIT: app has only its own grants until
-- a request switches to the role its caller may use (SET LOCAL ROLE).
CREATE ROLE app LOGIN NOINHERIT PASSWORD 'app-db-secret';
-- app_reader may read documents, under row-level security.
CREATE ROLE app_reader NOLOGIN;
-- app_guest may read nothing: a query on documents fails with 42501.
CREATE ROLE app_guest NOLOGIN;
GRANT app_reader, app_guest TO app;

CREATE TABLE users (
    id            serial PRIMARY KEY,
    username      text UNIQUE NOT NULL,
    password_hash text NOT NULL,  -- bcrypt (pgcrypto crypt)
    role          text NOT NULL
);
INSERT INTO users (username, password_hash, role) VALUES
    ('alice', crypt('correct-horse', gen_salt('bf', 4)), 'user'),
    ('bob',   crypt('hunter2',       gen_salt('bf', 4)), 'guest'),
    ('carol', crypt('s3cr3t-carol',  gen_salt('bf', 4)), 'user');
GRANT SELECT ON users TO app;

CREATE TABLE documents (
    id    integer PRIMARY KEY,
    owner text NOT NULL,
    title text NOT NULL,
    body  text NOT NULL
);
INSERT INTO documents (id, owner, title, body) VALUES
    (1, 'alice', 'alice-plan',  'confidential body of document one'),
    (2, 'bob',   'bob-notes',   'confidential body of document two'),
    (3, 'carol', 'carol-draft', 'confidential body of document three');
ALTER TABLE documents ENABLE ROW LEVEL SECURITY;
-- A reader sees only the documents of the user the request set in app.user.
CREATE POLICY owner_only ON documents FOR SELECT TO app_reader
    USING (owner = current_setting('app.user', true));
GRANT SELECT ON documents TO app_reader;
-- A reader may change the owner of its own documents (USING), but the
-- row it leaves must still be its own (WITH CHECK): giving a document
-- away fails with 42501, "new row violates row-level security policy".
CREATE POLICY owner_keeps ON documents FOR UPDATE TO app_reader
    USING (owner = current_setting('app.user', true))
    WITH CHECK (owner = current_setting('app.user', true));
GRANT UPDATE (owner) ON documents TO app_reader;
