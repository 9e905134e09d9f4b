// Drives PostgreSQL through the JDBC driver for the parser's wire tests
// (decoder/postgres/wire_test.go). Args: host port password. Each step
// prints "step <name> <outcome>".

import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.Properties;

public class JdbcClient {
    interface Step {
        void run() throws SQLException;
    }

    static void step(String name, Step s) {
        try {
            s.run();
            System.out.println("step " + name + " ok");
        } catch (SQLException e) {
            System.out.println("step " + name + " " + e.getSQLState());
        }
    }

    static Connection connect(String host, String port, String password) throws SQLException {
        Properties p = new Properties();
        p.setProperty("user", "app");
        p.setProperty("password", password);
        p.setProperty("sslmode", "disable");
        p.setProperty("ApplicationName", "wire-jdbc");
        return DriverManager.getConnection("jdbc:postgresql://" + host + ":" + port + "/authdb", p);
    }

    public static void main(String[] args) throws Exception {
        String host = args[0], port = args[1], password = args[2];
        step("bad-password", () -> connect(host, port, "wrong-" + password).close());
        try (Connection c = connect(host, port, password)) {
            // Seven logins: the driver switches to a named statement after five.
            step("login", () -> {
                for (int i = 0; i < 7; i++) {
                    try (PreparedStatement ps = c.prepareStatement(
                            "SELECT id, role FROM users WHERE username = ? AND password_hash = crypt(?, password_hash)")) {
                        ps.setString(1, "alice");
                        ps.setString(2, "correct-horse");
                        try (ResultSet rs = ps.executeQuery()) {
                            if (!rs.next()) throw new SQLException("no row", "XX000");
                        }
                    }
                }
            });
            step("guest-document", () -> {
                c.setAutoCommit(false);
                try {
                    try (Statement s = c.createStatement()) {
                        s.execute("SET LOCAL ROLE app_guest");
                    }
                    try (PreparedStatement ps = c.prepareStatement("SELECT id, title FROM documents WHERE id = ?")) {
                        ps.setInt(1, 2);
                        ps.executeQuery().close();
                    }
                } finally {
                    c.rollback();
                    c.setAutoCommit(true);
                }
            });
            step("syntax-error", () -> {
                try (Statement s = c.createStatement()) {
                    s.execute("SELEC 'syntax-secret-1' FROM users");
                }
            });
            step("batch", () -> {
                try (Statement s = c.createStatement()) {
                    s.execute("CREATE TEMP TABLE notes (id int PRIMARY KEY, body text)");
                }
                try (PreparedStatement ps = c.prepareStatement("INSERT INTO notes (id, body) VALUES (?, ?)")) {
                    for (int i = 0; i < 3; i++) {
                        ps.setInt(1, i == 2 ? 0 : i); // the third one violates the key
                        ps.setString(2, "batch-secret-" + i);
                        ps.addBatch();
                    }
                    ps.executeBatch();
                }
            });
            step("literal", () -> {
                try (Statement s = c.createStatement(); ResultSet rs = s.executeQuery(
                        "SELECT username FROM users WHERE username = 'literal-secret-8' OR id > 100")) {
                    rs.next();
                }
            });
        }
    }
}
