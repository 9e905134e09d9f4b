// An uninstrumented login/authorize backend over PostgreSQL, for the
// three-layer test flow (test/servers/chain/README.md): the JDK's
// com.sun.net.httpserver with a fixed thread pool, and Debian's
// PostgreSQL JDBC driver.
//
// Usage: java -cp /usr/share/java/postgresql.jar AuthzServer.java
// Configuration comes from the environment, as for the Python backend:
// PORT, HOST, DB_HOST, DB_PORT, DB_NAME, DB_USER, DB_PASSWORD, DB_POOL,
// POLL_MS, THREADS. "listening <port>" goes to stdout once it accepts;
// one line per request goes to stderr.

import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.net.URLDecoder;
import java.nio.charset.StandardCharsets;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.Base64;
import java.util.HashMap;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.ConcurrentLinkedDeque;
import java.util.concurrent.Executors;
import java.util.concurrent.Semaphore;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import javax.crypto.Mac;
import javax.crypto.spec.SecretKeySpec;

public class AuthzServer {
    static final byte[] JWT_KEY = "authprobe-test-key".getBytes(StandardCharsets.UTF_8);
    // The database role of a request's document query, by token role.
    static final Map<String, String> DB_ROLES = Map.of("user", "app_reader", "guest", "app_guest");
    static final Pattern DOC_PATH = Pattern.compile("^/api/documents/([0-9]{1,9})$");
    static final Pattern OWNER_PATH = Pattern.compile("^/api/documents/([0-9]{1,9})/owner$");
    static final Pattern JSON_FIELD = Pattern.compile("\"(\\w+)\"\\s*:\\s*\"((?:[^\"\\\\]|\\\\.)*)\"");
    static final Pattern CLAIM = Pattern.compile("\"(sub|role)\"\\s*:\\s*\"([^\"]*)\"");
    static final Pattern EXP = Pattern.compile("\"exp\"\\s*:\\s*([0-9]+)");

    static Pool pool;

    public static void main(String[] args) throws Exception {
        Map<String, String> env = System.getenv();
        pool = new Pool(Integer.parseInt(env.getOrDefault("DB_POOL", "4")));
        int pollMs = Integer.parseInt(env.getOrDefault("POLL_MS", "1000"));
        if (pollMs > 0) {
            Thread t = new Thread(() -> poll(pollMs), "poller");
            t.setDaemon(true);
            t.start();
        }
        HttpServer server = HttpServer.create(new InetSocketAddress(env.getOrDefault("HOST", "127.0.0.1"),
                Integer.parseInt(env.getOrDefault("PORT", "0"))), 128);
        server.createContext("/", AuthzServer::handle);
        server.setExecutor(Executors.newFixedThreadPool(Integer.parseInt(env.getOrDefault("THREADS", "8"))));
        server.start();
        System.out.println("listening " + server.getAddress().getPort());
        System.out.flush();
    }

    static Connection connect() throws SQLException {
        Map<String, String> env = System.getenv();
        Properties p = new Properties();
        p.setProperty("user", env.getOrDefault("DB_USER", "app"));
        p.setProperty("password", env.getOrDefault("DB_PASSWORD", ""));
        p.setProperty("ApplicationName", "chain-java");
        p.setProperty("sslmode", "disable");
        p.setProperty("connectTimeout", "5");
        String url = "jdbc:postgresql://" + env.getOrDefault("DB_HOST", "127.0.0.1") + ":"
                + env.getOrDefault("DB_PORT", "5432") + "/" + env.getOrDefault("DB_NAME", "authdb");
        return DriverManager.getConnection(url, p);
    }

    // A blocking pool of at most size connections, opened on demand; size 0
    // opens and closes one per use.
    static final class Pool {
        final int size;
        final Semaphore slots;
        final ConcurrentLinkedDeque<Connection> idle = new ConcurrentLinkedDeque<>();

        Pool(int size) {
            this.size = size;
            this.slots = new Semaphore(Math.max(size, 1));
        }

        Connection get() throws SQLException {
            if (size == 0) return connect();
            slots.acquireUninterruptibly();
            Connection c = idle.pollFirst();
            if (c != null) return c;
            try {
                return connect();
            } catch (SQLException e) {
                slots.release();
                throw e;
            }
        }

        void put(Connection c, boolean broken) {
            if (size == 0 || broken) {
                try { c.close(); } catch (SQLException ignored) { }
                if (size > 0) slots.release();
                return;
            }
            idle.addFirst(c);
            slots.release();
        }
    }

    static void poll(int ms) {
        Connection c = null;
        while (true) {
            try {
                Thread.sleep(ms);
                if (c == null) c = connect();
                try (Statement s = c.createStatement(); ResultSet rs = s.executeQuery("SELECT count(*) AS active_users FROM users")) {
                    rs.next();
                }
            } catch (SQLException e) {
                try { if (c != null) c.close(); } catch (SQLException ignored) { }
                c = null;
            } catch (InterruptedException e) {
                return;
            }
        }
    }

    static void handle(HttpExchange ex) throws IOException {
        int status = 500;
        try {
            byte[] body;
            try (InputStream in = ex.getRequestBody()) {
                body = in.readAllBytes();
            }
            status = route(ex, body);
        } catch (RuntimeException e) {
            status = send(ex, 500, "{\"error\":\"server_error\"}");
        } finally {
            String tp = ex.getRequestHeaders().getFirst("traceparent");
            System.err.println("request " + ex.getRequestMethod() + " " + ex.getRequestURI().getRawPath()
                    + " " + status + " traceparent=" + (tp == null ? "-" : tp));
            ex.close();
        }
    }

    static int route(HttpExchange ex, byte[] body) throws IOException {
        String path = ex.getRequestURI().getRawPath();
        String m = ex.getRequestMethod();
        if (m.equals("GET") && path.equals("/health")) return send(ex, 200, "{\"status\":\"ok\"}");
        if (m.equals("GET") && path.equals("/stats")) return stats(ex);
        if (m.equals("POST") && path.equals("/login")) return login(ex, body);
        Matcher dm = DOC_PATH.matcher(path);
        if (m.equals("GET") && dm.matches()) return document(ex, Integer.parseInt(dm.group(1)));
        Matcher om = OWNER_PATH.matcher(path);
        if (m.equals("POST") && om.matches()) return setOwner(ex, Integer.parseInt(om.group(1)), body);
        return send(ex, 404, "{\"error\":\"not_found\"}");
    }

    // A query outside any auth route.
    static int stats(HttpExchange ex) throws IOException {
        Connection c;
        try {
            c = pool.get();
        } catch (SQLException e) {
            return send(ex, 503, "{\"error\":\"db_unavailable\"}");
        }
        boolean broken = false;
        long n = 0;
        try (Statement s = c.createStatement(); ResultSet rs = s.executeQuery("SELECT count(*) AS user_count FROM users")) {
            if (rs.next()) n = rs.getLong(1);
        } catch (SQLException e) {
            broken = true;
            return send(ex, 503, "{\"error\":\"db_error\"}");
        } finally {
            pool.put(c, broken);
        }
        return send(ex, 200, "{\"users\":" + n + "}");
    }

    static int login(HttpExchange ex, byte[] raw) throws IOException {
        Map<String, String> form = new HashMap<>();
        String body = new String(raw, StandardCharsets.UTF_8);
        String ctype = ex.getRequestHeaders().getFirst("Content-Type");
        if (ctype != null && ctype.startsWith("application/json")) {
            Matcher jm = JSON_FIELD.matcher(body);
            while (jm.find()) form.put(jm.group(1), jm.group(2).replace("\\\"", "\"").replace("\\\\", "\\"));
        } else {
            for (String kv : body.split("&")) {
                int eq = kv.indexOf('=');
                if (eq > 0) form.put(URLDecoder.decode(kv.substring(0, eq), StandardCharsets.UTF_8),
                        URLDecoder.decode(kv.substring(eq + 1), StandardCharsets.UTF_8));
            }
        }
        String user = form.get("username"), password = form.get("password");
        if (user == null || password == null) return send(ex, 400, "{\"error\":\"bad_request\"}");
        Connection c;
        try {
            c = pool.get();
        } catch (SQLException e) {
            return send(ex, 503, "{\"error\":\"db_unavailable\"}");
        }
        boolean broken = false;
        String role = null;
        try (PreparedStatement ps = c.prepareStatement(
                "SELECT id, role FROM users WHERE username = ? AND password_hash = crypt(?, password_hash)")) {
            ps.setString(1, user);
            ps.setString(2, password);
            try (ResultSet rs = ps.executeQuery()) {
                if (rs.next()) role = rs.getString(2);
            }
        } catch (SQLException e) {
            broken = true;
            return send(ex, 503, "{\"error\":\"db_error\"}");
        } finally {
            pool.put(c, broken);
        }
        if (role == null) return send(ex, 401, "{\"error\":\"invalid_credentials\"}");
        return send(ex, 200, "{\"token\":\"" + issueToken(user, role) + "\"}");
    }

    // Work done as the caller in one transaction (asCaller).
    interface Work<T> {
        T run(Connection c) throws SQLException;
    }

    // Thrown by asCaller with the status the database's refusal means:
    // 403 for 42501 (a missing privilege, a row-level security policy),
    // else 503.
    static final class Refused extends Exception {
        final int status;

        Refused(int status) {
            super(null, null, false, false);
            this.status = status;
        }
    }

    // The sub and role claims of the request's bearer token, else null.
    static Map<String, String> claims(HttpExchange ex) {
        String auth = ex.getRequestHeaders().getFirst("Authorization");
        return auth != null && auth.startsWith("Bearer ") ? verifyToken(auth.substring(7)) : null;
    }

    // asCaller runs work in one transaction as the database role of the
    // caller's token role, with app.user set to its subject.
    static <T> T asCaller(Map<String, String> claims, Work<T> work) throws Refused {
        String role = DB_ROLES.getOrDefault(claims.get("role"), "app_guest");
        Connection c;
        try {
            c = pool.get();
        } catch (SQLException e) {
            throw new Refused(503);
        }
        boolean broken = false;
        try {
            c.setAutoCommit(false);
            try (Statement s = c.createStatement()) {
                s.execute("SET LOCAL ROLE " + role); // a fixed name from DB_ROLES
            }
            try (PreparedStatement ps = c.prepareStatement("SELECT set_config('app.user', ?, true)")) {
                ps.setString(1, claims.get("sub"));
                ps.executeQuery().close();
            }
            T result = work.run(c);
            c.commit();
            return result;
        } catch (SQLException e) {
            try {
                c.rollback();
            } catch (SQLException e2) {
                broken = true;
            }
            if ("42501".equals(e.getSQLState())) throw new Refused(403);
            broken = true;
            throw new Refused(503);
        } finally {
            try { c.setAutoCommit(true); } catch (SQLException e) { broken = true; }
            pool.put(c, broken);
        }
    }

    static int refused(HttpExchange ex, Refused r) throws IOException {
        return send(ex, r.status, r.status == 403 ? "{\"error\":\"forbidden\"}" : "{\"error\":\"db_error\"}");
    }

    static int document(HttpExchange ex, int id) throws IOException {
        Map<String, String> claims = claims(ex);
        if (claims == null) return send(ex, 401, "{\"error\":\"unauthorized\"}");
        String title;
        try {
            title = asCaller(claims, c -> {
                try (PreparedStatement ps = c.prepareStatement("SELECT id, title FROM documents WHERE id = ?")) {
                    ps.setInt(1, id);
                    try (ResultSet rs = ps.executeQuery()) {
                        return rs.next() ? rs.getString(2) : null;
                    }
                }
            });
        } catch (Refused r) {
            return refused(ex, r);
        }
        // No row: row-level security hid it (or it does not exist).
        if (title == null) return send(ex, 403, "{\"error\":\"forbidden\"}");
        return send(ex, 200, "{\"id\":" + id + ",\"title\":\"" + title + "\"}");
    }

    // POST /api/documents/{id}/owner with a form owner=NAME: the update
    // row-level security refuses (42501) when NAME is not the caller.
    static int setOwner(HttpExchange ex, int id, byte[] raw) throws IOException {
        Map<String, String> claims = claims(ex);
        if (claims == null) return send(ex, 401, "{\"error\":\"unauthorized\"}");
        String owner = null;
        for (String kv : new String(raw, StandardCharsets.UTF_8).split("&")) {
            if (kv.startsWith("owner=")) owner = URLDecoder.decode(kv.substring(6), StandardCharsets.UTF_8);
        }
        if (owner == null) return send(ex, 400, "{\"error\":\"bad_request\"}");
        String newOwner = owner;
        int n;
        try {
            n = asCaller(claims, c -> {
                try (PreparedStatement ps = c.prepareStatement("UPDATE documents SET owner = ? WHERE id = ?")) {
                    ps.setString(1, newOwner);
                    ps.setInt(2, id);
                    return ps.executeUpdate();
                }
            });
        } catch (Refused r) {
            return refused(ex, r);
        }
        // No row: row-level security hid it (or it does not exist).
        if (n == 0) return send(ex, 403, "{\"error\":\"forbidden\"}");
        return send(ex, 200, "{\"id\":" + id + "}");
    }

    static String b64(byte[] b) {
        return Base64.getUrlEncoder().withoutPadding().encodeToString(b);
    }

    static byte[] sign(String input) {
        try {
            Mac mac = Mac.getInstance("HmacSHA256");
            mac.init(new SecretKeySpec(JWT_KEY, "HmacSHA256"));
            return mac.doFinal(input.getBytes(StandardCharsets.UTF_8));
        } catch (Exception e) {
            throw new IllegalStateException(e);
        }
    }

    static String issueToken(String sub, String role) {
        long now = System.currentTimeMillis() / 1000;
        String header = b64("{\"alg\":\"HS256\",\"typ\":\"JWT\"}".getBytes(StandardCharsets.UTF_8));
        String payload = b64(("{\"sub\":\"" + sub + "\",\"role\":\"" + role + "\",\"roles\":[\"" + role
                + "\"],\"iat\":" + now + ",\"exp\":" + (now + 3600) + "}").getBytes(StandardCharsets.UTF_8));
        return header + "." + payload + "." + b64(sign(header + "." + payload));
    }

    // The sub and role claims of a valid, unexpired HS256 token, else null.
    static Map<String, String> verifyToken(String token) {
        String[] parts = token.split("\\.");
        if (parts.length != 3) return null;
        try {
            byte[] want = sign(parts[0] + "." + parts[1]);
            if (!java.security.MessageDigest.isEqual(want, Base64.getUrlDecoder().decode(parts[2]))) return null;
            String payload = new String(Base64.getUrlDecoder().decode(parts[1]), StandardCharsets.UTF_8);
            Map<String, String> claims = new HashMap<>();
            Matcher m = CLAIM.matcher(payload);
            while (m.find()) claims.put(m.group(1), m.group(2));
            Matcher e = EXP.matcher(payload);
            if (!claims.containsKey("sub") || !e.find() || Long.parseLong(e.group(1)) < System.currentTimeMillis() / 1000) return null;
            return claims;
        } catch (IllegalArgumentException e) {
            return null;
        }
    }

    static int send(HttpExchange ex, int status, String json) throws IOException {
        byte[] b = json.getBytes(StandardCharsets.UTF_8);
        ex.getResponseHeaders().set("Content-Type", "application/json");
        ex.sendResponseHeaders(status, b.length);
        try (OutputStream out = ex.getResponseBody()) {
            out.write(b);
        }
        return status;
    }
}
