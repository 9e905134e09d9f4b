#!/usr/bin/env node
// An uninstrumented Express 5 login service for authprobe's end-to-end
// tests: Express's default routing (case-insensitive, a trailing slash
// allowed, paths matched undecoded) and its body parsers are the rules the
// evasion tests compare with the other servers.
//
// Usage: node server.js [PORT]  (or env PORT; HOST defaults to 127.0.0.1),
// with express installed from this folder's package-lock.json (the e2e
// harness runs `npm ci` into a cache and sets NODE_PATH). Port 0 picks a
// free port; the real one is printed as "listening <port>" on stdout once
// the socket accepts connections. Routes: POST /login and GET /health as in
// test/servers/README.md; anything else 404.
'use strict';

const crypto = require('crypto');
const express = require('express');

const USERS = { alice: ['correct-horse', 'user'], bob: ['hunter2', 'guest'] };
// Tokens are signed so they look real; no route verifies them.
const JWT_KEY = 'authprobe-test-key';
// Marks every answer of the login route, so a test can tell a request the
// server routed to it from one it refused or routed elsewhere.
const LOGIN_MARKER = 'X-Login-Handler';

function makeJWT(sub, role) {
  const b64url = (s) => Buffer.from(s).toString('base64url');
  const now = Math.floor(Date.now() / 1000);
  const input = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' })) + '.' +
    b64url(JSON.stringify({ sub, role, roles: [role], iat: now, exp: now + 3600 }));
  return input + '.' + crypto.createHmac('sha256', JWT_KEY).update(input).digest('base64url');
}

function checkPassword(username, password) {
  if (typeof username !== 'string' || typeof password !== 'string') return false;
  if (!Object.prototype.hasOwnProperty.call(USERS, username)) return false;
  const want = Buffer.from(USERS[username][0]);
  const got = Buffer.from(password);
  return want.length === got.length && crypto.timingSafeEqual(want, got);
}

const app = express();
app.disable('x-powered-by');
app.set('etag', false);

app.post('/login',
  (req, res, next) => {
    res.set(LOGIN_MARKER, '1');
    next();
  },
  express.urlencoded(),
  express.json(),
  (req, res) => {
    // As an Express app would: whatever the body parser made of the fields
    // (a form field sent twice is an array here).
    const { username = '', password = '' } = req.body || {};
    if (username === 'locked-user') return res.status(423).json({ error: 'account_locked' });
    if (username === 'ratelimited') {
      return res.status(429).set('Retry-After', '30').json({ error: 'rate_limited' });
    }
    if (!checkPassword(username, password)) return res.status(401).json({ error: 'invalid_credentials' });
    res.cookie('session', crypto.randomBytes(16).toString('hex'), { path: '/', httpOnly: true });
    res.status(200).json({ token: makeJWT(username, USERS[username][1]) });
  },
  // A body the parsers refuse (malformed JSON) is still the login route's
  // answer.
  (err, req, res, next) => { // eslint-disable-line no-unused-vars
    res.status(err.status && err.status < 500 ? 400 : 500).json({ error: 'bad_request' });
  });

app.all('/login', (req, res) => res.status(405).json({ error: 'method_not_allowed' }));
app.get('/health', (req, res) => res.json({ status: 'ok' }));
app.use((req, res) => res.status(404).json({ error: 'not_found' }));

const port = Number(process.argv[2] || process.env.PORT || 0);
const host = process.env.HOST || '127.0.0.1';
const server = app.listen(port, host, () => {
  process.stdout.write(`listening ${server.address().port}\n`);
});
// Long idle timeouts: tests open connections and use them seconds later.
server.keepAliveTimeout = 120000;
server.headersTimeout = 130000;
process.on('SIGTERM', () => process.exit(0));
