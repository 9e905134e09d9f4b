// An uninstrumented login service for authprobe's end-to-end tests, on the
// JDK's com.sun.net.httpserver alone.
//
// Usage: java LoginServer.java [PORT]  (or env PORT; HOST defaults to
// 127.0.0.1). Port 0 picks a free port; the real one is printed as
// "listening <port>" on stdout once the socket accepts connections. Routes
// and answers are the same in every language under test/servers/; see
// test/servers/README.md.

import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.net.URLDecoder;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.SecureRandom;
import java.util.Base64;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.concurrent.Executors;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import javax.crypto.Mac;
import javax.crypto.spec.SecretKeySpec;

public class LoginServer {
    static final Map<String, String[]> USERS = Map.of(
            "alice", new String[] {"correct-horse", "user"},
            "bob", new String[] {"hunter2", "guest"});
    static final String CLIENT_ID = "svc";
    static final String CLIENT_SECRET = "s3cret";
    static final String AUTH_CODE = "good-code";
    static final String REFRESH_TOKEN = "good-refresh";
    // Tokens are signed so they look real; no route verifies them.
    static final byte[] JWT_KEY = "authprobe-test-key".getBytes(StandardCharsets.UTF_8);
    static final SecureRandom RANDOM = new SecureRandom();

    public static void main(String[] args) throws IOException {
        // Long idle timeout: tests open connections before the agent starts
        // and use them seconds later.
        System.setProperty("sun.net.httpserver.idleInterval", "120");
        String port = args.length > 0 ? args[0] : System.getenv().getOrDefault("PORT", "0");
        String host = System.getenv().getOrDefault("HOST", "127.0.0.1");
        HttpServer server = HttpServer.create(new InetSocketAddress(host, Integer.parseInt(port)), 128);
        server.createContext("/", LoginServer::handle);
        server.setExecutor(Executors.newCachedThreadPool());
        server.start();
        System.out.println("listening " + server.getAddress().getPort());
        System.out.flush();
    }

    static void handle(HttpExchange ex) throws IOException {
        try {
            // Read the whole body first so keep-alive and pipelining see the
            // next request at the right byte whatever the route does.
            byte[] body;
            try (InputStream in = ex.getRequestBody()) {
                body = in.readAllBytes();
            }
            route(ex, body);
        } catch (RuntimeException e) {
            send(ex, 500, "{\"error\":\"server_error\"}", null);
        } finally {
            ex.close();
        }
    }

    static void route(HttpExchange ex, byte[] body) throws IOException {
        String path = ex.getRequestURI().getRawPath();
        String m = ex.getRequestMethod();
        if (path.equals("/login")) {
            if (m.equals("POST")) login(ex, body); else notAllowed(ex);
        } else if (path.startsWith("/api/")) {
            api(ex, path);
        } else if (path.equals("/basic")) {
            if (m.equals("GET")) basic(ex); else notAllowed(ex);
        } else if (path.equals("/oauth/token")) {
            if (m.equals("POST")) token(ex, body); else notAllowed(ex);
        } else if (path.equals("/logout")) {
            if (m.equals("POST")) {
                send(ex, 204, null, Map.of("Set-Cookie", "session=; Max-Age=0; Path=/"));
            } else {
                notAllowed(ex);
            }
        } else if (path.equals("/health")) {
            send(ex, 200, "{\"status\":\"ok\"}", null);
        } else if (path.equals("/public") || path.startsWith("/public/")) {
            String client = ex.getRemoteAddress().getAddress().getHostAddress();
            send(ex, 200, "{\"path\":" + quote(path) + ",\"client\":" + quote(client) + "}", null);
        } else {
            send(ex, 404, "{\"error\":\"not_found\"}", null);
        }
    }

    static void notAllowed(HttpExchange ex) throws IOException {
        send(ex, 405, "{\"error\":\"method_not_allowed\"}", null);
    }

    static void send(HttpExchange ex, int status, String json, Map<String, String> headers) throws IOException {
        if (headers != null) {
            headers.forEach((k, v) -> ex.getResponseHeaders().set(k, v));
        }
        if (json == null) {
            ex.sendResponseHeaders(status, -1);
            return;
        }
        byte[] b = json.getBytes(StandardCharsets.UTF_8);
        ex.getResponseHeaders().set("Content-Type", "application/json");
        ex.sendResponseHeaders(status, b.length);
        try (OutputStream out = ex.getResponseBody()) {
            out.write(b);
        }
    }

    // Marks every answer of the login handler, so a test can tell a request
    // the server routed to it from one it refused or routed elsewhere.
    static final String LOGIN_MARKER = "X-Login-Handler";

    static void login(HttpExchange ex, byte[] body) throws IOException {
        ex.getResponseHeaders().set(LOGIN_MARKER, "1");
        Map<String, String> f = fields(ex, body);
        if (f == null) {
            send(ex, 400, "{\"error\":\"bad_request\"}", null);
            return;
        }
        String username = f.getOrDefault("username", "");
        String password = f.getOrDefault("password", "");
        if (username.equals("locked-user")) {
            send(ex, 423, "{\"error\":\"account_locked\"}", null);
        } else if (username.equals("ratelimited")) {
            send(ex, 429, "{\"error\":\"rate_limited\"}", Map.of("Retry-After", "30"));
        } else if (!checkPassword(username, password)) {
            send(ex, 401, "{\"error\":\"invalid_credentials\"}", null);
        } else {
            send(ex, 200, "{\"token\":" + quote(makeJWT(username, USERS.get(username)[1])) + "}",
                    Map.of("Set-Cookie", "session=" + randomHex(16) + "; Path=/; HttpOnly"));
        }
    }

    static void api(HttpExchange ex, String path) throws IOException {
        String auth = header(ex, "Authorization");
        if (!auth.startsWith("Bearer ")) {
            send(ex, 401, "{\"error\":\"unauthorized\"}", Map.of("WWW-Authenticate", "Bearer"));
            return;
        }
        String payload = jwtPayload(auth.substring(7).trim());
        if (payload == null) {
            send(ex, 401, "{\"error\":\"invalid_token\"}", Map.of("WWW-Authenticate", "Bearer"));
            return;
        }
        if (path.contains("admin") || hasGuestRole(payload)) {
            send(ex, 403, "{\"error\":\"forbidden\"}", null);
            return;
        }
        send(ex, 200, "{\"ok\":true,\"path\":" + quote(path) + "}", null);
    }

    static void basic(HttpExchange ex) throws IOException {
        String[] cred = decodeBasic(header(ex, "Authorization"));
        if (cred != null && cred[0].equals("alice") && checkPassword(cred[0], cred[1])) {
            send(ex, 200, "{\"ok\":true}", null);
            return;
        }
        send(ex, 401, "{\"error\":\"unauthorized\"}", Map.of("WWW-Authenticate", "Basic realm=\"test\""));
    }

    static void token(HttpExchange ex, byte[] body) throws IOException {
        Map<String, String> f = formFields(body);
        boolean ok;
        String sub;
        switch (f.getOrDefault("grant_type", "")) {
            case "password":
                sub = f.getOrDefault("username", "");
                ok = checkPassword(sub, f.getOrDefault("password", ""));
                break;
            case "client_credentials": {
                String id = f.getOrDefault("client_id", "");
                String secret = f.getOrDefault("client_secret", "");
                String[] cred = decodeBasic(header(ex, "Authorization"));
                if (cred != null) {
                    id = cred[0];
                    secret = cred[1];
                }
                if (!id.equals(CLIENT_ID) || !safeEquals(secret, CLIENT_SECRET)) {
                    send(ex, 401, "{\"error\":\"invalid_client\"}", null);
                    return;
                }
                ok = true;
                sub = id;
                break;
            }
            case "authorization_code":
                ok = AUTH_CODE.equals(f.get("code"));
                sub = "alice";
                break;
            case "refresh_token":
                ok = REFRESH_TOKEN.equals(f.get("refresh_token"));
                sub = "alice";
                break;
            default:
                send(ex, 400, "{\"error\":\"unsupported_grant_type\"}", null);
                return;
        }
        if (!ok) {
            send(ex, 400, "{\"error\":\"invalid_grant\"}", null);
            return;
        }
        String role = USERS.containsKey(sub) ? USERS.get(sub)[1] : "service";
        send(ex, 200, "{\"access_token\":" + quote(makeJWT(sub, role))
                + ",\"token_type\":\"Bearer\",\"expires_in\":3600}", Map.of("Cache-Control", "no-store"));
    }

    // --- helpers ---

    static String header(HttpExchange ex, String name) {
        String v = ex.getRequestHeaders().getFirst(name);
        return v == null ? "" : v;
    }

    static boolean safeEquals(String a, String b) {
        return MessageDigest.isEqual(a.getBytes(StandardCharsets.UTF_8), b.getBytes(StandardCharsets.UTF_8));
    }

    static boolean checkPassword(String username, String password) {
        String[] u = USERS.get(username);
        return u != null && safeEquals(u[0], password);
    }

    static String[] decodeBasic(String auth) {
        if (!auth.startsWith("Basic ")) {
            return null;
        }
        String s;
        try {
            s = new String(Base64.getDecoder().decode(auth.substring(6).trim()), StandardCharsets.UTF_8);
        } catch (IllegalArgumentException e) {
            return new String[] {"", ""};
        }
        int i = s.indexOf(':');
        return i < 0 ? new String[] {s, ""} : new String[] {s.substring(0, i), s.substring(i + 1)};
    }

    static Map<String, String> formFields(byte[] body) {
        Map<String, String> out = new HashMap<>();
        String s = new String(body, StandardCharsets.UTF_8);
        if (s.isEmpty()) {
            return out;
        }
        for (String pair : s.split("&")) {
            int i = pair.indexOf('=');
            String k = i < 0 ? pair : pair.substring(0, i);
            String v = i < 0 ? "" : pair.substring(i + 1);
            try {
                out.putIfAbsent(URLDecoder.decode(k, StandardCharsets.UTF_8), URLDecoder.decode(v, StandardCharsets.UTF_8));
            } catch (IllegalArgumentException e) {
                // a malformed escape: skip the pair
            }
        }
        return out;
    }

    // fields returns the body's string fields, or null for a malformed JSON
    // body. The JDK has no JSON parser; a flat object of string values is
    // all the tests send.
    static Map<String, String> fields(HttpExchange ex, byte[] body) {
        String ctype = header(ex, "Content-Type").split(";")[0].trim().toLowerCase();
        if (!ctype.equals("application/json")) {
            return formFields(body);
        }
        return parseFlatJSON(new String(body, StandardCharsets.UTF_8));
    }

    static final Pattern JSON_STRING = Pattern.compile("\"((?:[^\"\\\\]|\\\\.)*)\"");

    static Map<String, String> parseFlatJSON(String s) {
        s = s.trim();
        if (!s.startsWith("{") || !s.endsWith("}")) {
            return null;
        }
        Map<String, String> out = new LinkedHashMap<>();
        String inner = s.substring(1, s.length() - 1).trim();
        int i = 0;
        while (i < inner.length()) {
            Matcher k = JSON_STRING.matcher(inner);
            if (!k.find(i) || k.start() != i) {
                return null;
            }
            int j = skipSpace(inner, k.end());
            if (j >= inner.length() || inner.charAt(j) != ':') {
                return null;
            }
            j = skipSpace(inner, j + 1);
            Matcher v = JSON_STRING.matcher(inner);
            if (v.find(j) && v.start() == j) {
                out.putIfAbsent(unescape(k.group(1)), unescape(v.group(1)));
                j = v.end();
            } else {
                // a non-string value (number, bool, null): skip it
                int end = j;
                while (end < inner.length() && inner.charAt(end) != ',') {
                    end++;
                }
                if (end == j) {
                    return null;
                }
                j = end;
            }
            j = skipSpace(inner, j);
            if (j < inner.length()) {
                if (inner.charAt(j) != ',') {
                    return null;
                }
                j = skipSpace(inner, j + 1);
            }
            i = j;
        }
        return out;
    }

    static int skipSpace(String s, int i) {
        while (i < s.length() && Character.isWhitespace(s.charAt(i))) {
            i++;
        }
        return i;
    }

    static String unescape(String s) {
        StringBuilder b = new StringBuilder();
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            if (c != '\\' || i + 1 >= s.length()) {
                b.append(c);
                continue;
            }
            char e = s.charAt(++i);
            switch (e) {
                case 'n': b.append('\n'); break;
                case 't': b.append('\t'); break;
                case 'r': b.append('\r'); break;
                case 'b': b.append('\b'); break;
                case 'f': b.append('\f'); break;
                case 'u':
                    if (i + 4 < s.length()) {
                        b.append((char) Integer.parseInt(s.substring(i + 1, i + 5), 16));
                        i += 4;
                    }
                    break;
                default: b.append(e);
            }
        }
        return b.toString();
    }

    static String quote(String s) {
        StringBuilder b = new StringBuilder("\"");
        for (char c : s.toCharArray()) {
            if (c == '"' || c == '\\') {
                b.append('\\').append(c);
            } else if (c < 0x20) {
                b.append(String.format("\\u%04x", (int) c));
            } else {
                b.append(c);
            }
        }
        return b.append('"').toString();
    }

    static String b64url(byte[] b) {
        return Base64.getUrlEncoder().withoutPadding().encodeToString(b);
    }

    static String makeJWT(String sub, String role) {
        long now = System.currentTimeMillis() / 1000;
        String header = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
        String payload = "{\"sub\":" + quote(sub) + ",\"role\":" + quote(role) + ",\"roles\":[" + quote(role)
                + "],\"iat\":" + now + ",\"exp\":" + (now + 3600) + "}";
        String input = b64url(header.getBytes(StandardCharsets.UTF_8)) + "."
                + b64url(payload.getBytes(StandardCharsets.UTF_8));
        try {
            Mac mac = Mac.getInstance("HmacSHA256");
            mac.init(new SecretKeySpec(JWT_KEY, "HmacSHA256"));
            return input + "." + b64url(mac.doFinal(input.getBytes(StandardCharsets.UTF_8)));
        } catch (Exception e) {
            throw new IllegalStateException("sign token", e);
        }
    }

    // jwtPayload decodes a JWT payload without verifying it; null when
    // malformed.
    static String jwtPayload(String token) {
        String[] parts = token.split("\\.", -1);
        if (parts.length != 3) {
            return null;
        }
        try {
            String p = new String(Base64.getUrlDecoder().decode(parts[1]), StandardCharsets.UTF_8).trim();
            return p.startsWith("{") && p.endsWith("}") ? p : null;
        } catch (IllegalArgumentException e) {
            return null;
        }
    }

    static final Pattern ROLE_GUEST = Pattern.compile("\"role\"\\s*:\\s*\"guest\"");
    static final Pattern ROLES_GUEST = Pattern.compile("\"roles\"\\s*:\\s*\\[[^\\]]*\"guest\"");

    static boolean hasGuestRole(String payload) {
        return ROLE_GUEST.matcher(payload).find() || ROLES_GUEST.matcher(payload).find();
    }

    static String randomHex(int n) {
        byte[] b = new byte[n];
        RANDOM.nextBytes(b);
        StringBuilder s = new StringBuilder();
        for (byte x : b) {
            s.append(String.format("%02x", x));
        }
        return s.toString();
    }
}
