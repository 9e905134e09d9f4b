#!/usr/bin/env node
// An uninstrumented login service for authprobe's end-to-end tests.
//
// Node's http module only. Usage: node login_server.js [PORT]  (or env PORT;
// HOST defaults to 127.0.0.1). Port 0 picks a free port; the real one is
// printed as "listening <port>" on stdout once the socket accepts
// connections. Routes and answers are the same in every language under
// test/servers/; see test/servers/README.md. TLS_CERT and TLS_KEY (PEM
// files) make it serve HTTPS (the https module: OpenSSL linked into node,
// on memory BIOs).
'use strict';

const http = require('http');
const crypto = require('crypto');

const USERS = { alice: ['correct-horse', 'user'], bob: ['hunter2', 'guest'] };
const CLIENT_ID = 'svc';
const CLIENT_SECRET = 's3cret';
const AUTH_CODE = 'good-code';
const REFRESH_TOKEN = 'good-refresh';
// Tokens are signed so they look real; no route verifies them.
const JWT_KEY = 'authprobe-test-key';

function b64url(buf) {
  return Buffer.from(buf).toString('base64url');
}

function makeJWT(sub, role) {
  const now = Math.floor(Date.now() / 1000);
  const header = { alg: 'HS256', typ: 'JWT' };
  const payload = { sub, role, roles: [role], iat: now, exp: now + 3600 };
  const input = b64url(JSON.stringify(header)) + '.' + b64url(JSON.stringify(payload));
  const sig = crypto.createHmac('sha256', JWT_KEY).update(input).digest();
  return input + '.' + b64url(sig);
}

// jwtPayload decodes a JWT payload without verifying it; null when malformed.
function jwtPayload(token) {
  const parts = token.split('.');
  if (parts.length !== 3) return null;
  try {
    const p = JSON.parse(Buffer.from(parts[1], 'base64url').toString('utf8'));
    return p && typeof p === 'object' && !Array.isArray(p) ? p : null;
  } catch (e) {
    return null;
  }
}

function hasRole(p, role) {
  return p.role === role || (Array.isArray(p.roles) && p.roles.includes(role));
}

function safeEqual(a, b) {
  const x = Buffer.from(String(a));
  const y = Buffer.from(String(b));
  return x.length === y.length && crypto.timingSafeEqual(x, y);
}

function checkPassword(username, password) {
  const u = Object.prototype.hasOwnProperty.call(USERS, username) ? USERS[username] : null;
  return u !== null && safeEqual(u[0], password);
}

function formFields(body) {
  const out = {};
  for (const [k, v] of new URLSearchParams(body.toString('utf8'))) {
    if (!(k in out)) out[k] = v;
  }
  return out;
}

// fields returns the body's string fields, or null when a JSON body is
// malformed.
function fields(req, body) {
  const ctype = (req.headers['content-type'] || '').split(';')[0].trim().toLowerCase();
  if (ctype === 'application/json') {
    let obj;
    try {
      obj = JSON.parse(body.length ? body.toString('utf8') : 'null');
    } catch (e) {
      return null;
    }
    if (!obj || typeof obj !== 'object' || Array.isArray(obj)) return null;
    const out = {};
    for (const [k, v] of Object.entries(obj)) if (typeof v === 'string') out[k] = v;
    return out;
  }
  return formFields(body);
}

function decodeBasic(auth) {
  if (!auth.startsWith('Basic ')) return null;
  const s = Buffer.from(auth.slice(6).trim(), 'base64').toString('utf8');
  const i = s.indexOf(':');
  return i < 0 ? [s, ''] : [s.slice(0, i), s.slice(i + 1)];
}

function send(res, status, obj, headers) {
  const h = Object.assign({}, headers || {});
  if (status === 204) {
    res.writeHead(status, h);
    res.end();
    return;
  }
  const body = Buffer.from(JSON.stringify(obj));
  h['Content-Type'] = 'application/json';
  h['Content-Length'] = body.length;
  res.writeHead(status, h);
  res.end(body);
}

// Marks every answer of the login handler, so a test can tell a request the
// server routed to it from one it refused or routed elsewhere.
const LOGIN_MARKER = 'X-Login-Handler';

function login(req, res, body) {
  res.setHeader(LOGIN_MARKER, '1');
  const f = fields(req, body);
  if (f === null) return send(res, 400, { error: 'bad_request' });
  const username = f.username || '';
  const password = f.password || '';
  if (username === 'locked-user') return send(res, 423, { error: 'account_locked' });
  if (username === 'ratelimited') return send(res, 429, { error: 'rate_limited' }, { 'Retry-After': '30' });
  if (!checkPassword(username, password)) return send(res, 401, { error: 'invalid_credentials' });
  const session = crypto.randomBytes(16).toString('hex');
  send(res, 200, { token: makeJWT(username, USERS[username][1]) }, {
    'Set-Cookie': `session=${session}; Path=/; HttpOnly`,
  });
}

function api(req, res, path) {
  const auth = req.headers.authorization || '';
  if (!auth.startsWith('Bearer ')) {
    return send(res, 401, { error: 'unauthorized' }, { 'WWW-Authenticate': 'Bearer' });
  }
  const p = jwtPayload(auth.slice(7).trim());
  if (p === null) return send(res, 401, { error: 'invalid_token' }, { 'WWW-Authenticate': 'Bearer' });
  if (path.includes('admin') || hasRole(p, 'guest')) return send(res, 403, { error: 'forbidden' });
  send(res, 200, { ok: true, path });
}

function basic(req, res) {
  const cred = decodeBasic(req.headers.authorization || '');
  if (cred && cred[0] === 'alice' && checkPassword(cred[0], cred[1])) return send(res, 200, { ok: true });
  send(res, 401, { error: 'unauthorized' }, { 'WWW-Authenticate': 'Basic realm="test"' });
}

function token(req, res, body) {
  const f = formFields(body);
  let ok;
  let sub;
  switch (f.grant_type || '') {
    case 'password':
      sub = f.username || '';
      ok = checkPassword(sub, f.password || '');
      break;
    case 'client_credentials': {
      let cid = f.client_id || '';
      let secret = f.client_secret || '';
      const cred = decodeBasic(req.headers.authorization || '');
      if (cred) [cid, secret] = cred;
      if (!(cid === CLIENT_ID && safeEqual(secret, CLIENT_SECRET))) {
        return send(res, 401, { error: 'invalid_client' });
      }
      ok = true;
      sub = cid;
      break;
    }
    case 'authorization_code':
      ok = f.code === AUTH_CODE;
      sub = 'alice';
      break;
    case 'refresh_token':
      ok = f.refresh_token === REFRESH_TOKEN;
      sub = 'alice';
      break;
    default:
      return send(res, 400, { error: 'unsupported_grant_type' });
  }
  if (!ok) return send(res, 400, { error: 'invalid_grant' });
  const role = Object.prototype.hasOwnProperty.call(USERS, sub) ? USERS[sub][1] : 'service';
  send(res, 200, { access_token: makeJWT(sub, role), token_type: 'Bearer', expires_in: 3600 }, {
    'Cache-Control': 'no-store',
  });
}

function route(req, res, body) {
  const path = req.url.split('?')[0];
  const m = req.method;
  const notAllowed = () => send(res, 405, { error: 'method_not_allowed' });
  if (path === '/login') return m === 'POST' ? login(req, res, body) : notAllowed();
  if (path.startsWith('/api/')) return api(req, res, path);
  if (path === '/basic') return m === 'GET' ? basic(req, res) : notAllowed();
  if (path === '/oauth/token') return m === 'POST' ? token(req, res, body) : notAllowed();
  if (path === '/logout') {
    if (m !== 'POST') return notAllowed();
    return send(res, 204, null, { 'Set-Cookie': 'session=; Max-Age=0; Path=/' });
  }
  if (path === '/health') return send(res, 200, { status: 'ok' });
  if (path === '/public' || path.startsWith('/public/')) {
    return send(res, 200, { path, client: req.socket.remoteAddress });
  }
  send(res, 404, { error: 'not_found' });
}

const handler = (req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => route(req, res, Buffer.concat(chunks)));
};
const server = process.env.TLS_CERT && process.env.TLS_KEY
  ? require('https').createServer({
    cert: require('fs').readFileSync(process.env.TLS_CERT),
    key: require('fs').readFileSync(process.env.TLS_KEY),
  }, handler)
  : http.createServer(handler);
// Long idle timeouts: tests open connections before the agent starts and
// use them seconds later.
server.keepAliveTimeout = 120000;
server.headersTimeout = 130000;

const port = Number(process.argv[2] || process.env.PORT || 0);
const host = process.env.HOST || '127.0.0.1';
server.listen(port, host, () => {
  process.stdout.write(`listening ${server.address().port}\n`);
});
process.on('SIGTERM', () => process.exit(0));
