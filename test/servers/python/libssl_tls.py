"""HTTPS for login_server.py through a libssl of one's choosing, by ctypes.

TLS_LIBSSL_DIR names a directory holding libssl.so.1.1 and
libcrypto.so.1.1 (Debian 11's OpenSSL 1.1.1, which Debian 12 does not
ship: bpf/uprobe/testdata/get-libssl1.1.sh fetches it). The server then
never imports the ssl module (which would map the system's libssl.so.3):
each accepted socket gets an SSL* of that library, driven by
SSL_do_handshake, SSL_read and SSL_write on the blocking socket, so the
plaintext passes through OpenSSL 1.1's calls only.

Only the socket operations socketserver and http.server use are provided.
"""

import ctypes
import io
import os

SSL_FILETYPE_PEM = 1


class Library:
    """The OpenSSL 1.1 entry points, typed."""

    def __init__(self, directory):
        # libcrypto first, by path, so libssl's DT_NEEDED finds it loaded.
        self.crypto = ctypes.CDLL(os.path.join(directory, "libcrypto.so.1.1"))
        lib = ctypes.CDLL(os.path.join(directory, "libssl.so.1.1"))
        p, i, c = ctypes.c_void_p, ctypes.c_int, ctypes.c_char_p

        def fn(name, res, *args):
            f = getattr(lib, name)
            f.restype, f.argtypes = res, list(args)
            return f

        self.init = fn("OPENSSL_init_ssl", i, ctypes.c_uint64, p)
        self.server_method = fn("TLS_server_method", p)
        self.ctx_new = fn("SSL_CTX_new", p, p)
        self.use_chain = fn("SSL_CTX_use_certificate_chain_file", i, p, c)
        self.use_key = fn("SSL_CTX_use_PrivateKey_file", i, p, c, i)
        self.new = fn("SSL_new", p, p)
        self.set_fd = fn("SSL_set_fd", i, p, i)
        self.set_accept_state = fn("SSL_set_accept_state", None, p)
        self.do_handshake = fn("SSL_do_handshake", i, p)
        self.read = fn("SSL_read", i, p, p, i)
        self.write = fn("SSL_write", i, p, p, i)
        self.get_error = fn("SSL_get_error", i, p, i)
        self.shutdown = fn("SSL_shutdown", i, p)
        self.free = fn("SSL_free", None, p)
        self.version = fn("OpenSSL_version", c, i)
        if self.init(0, None) != 1:
            raise OSError("OPENSSL_init_ssl failed")


class Context:
    """An SSL_CTX with the server's certificate and key."""

    def __init__(self, directory, cert, key):
        self.lib = Library(directory)
        self.ctx = self.lib.ctx_new(self.lib.server_method())
        if not self.ctx:
            raise OSError("SSL_CTX_new failed")
        if self.lib.use_chain(self.ctx, cert.encode()) != 1:
            raise OSError("SSL_CTX_use_certificate_chain_file %s failed" % cert)
        if self.lib.use_key(self.ctx, key.encode(), SSL_FILETYPE_PEM) != 1:
            raise OSError("SSL_CTX_use_PrivateKey_file %s failed" % key)

    def wrap(self, sock):
        return Connection(self.lib, self.ctx, sock)


class Connection:
    """An accepted socket with its SSL*: what socketserver and
    BaseHTTPRequestHandler call on a request."""

    def __init__(self, lib, ctx, sock):
        self.lib, self.sock = lib, sock
        self.ssl = lib.new(ctx)
        if not self.ssl:
            raise OSError("SSL_new failed")
        lib.set_fd(self.ssl, sock.fileno())
        lib.set_accept_state(self.ssl)

    def _check(self, what, ret):
        if ret <= 0:
            err = self.lib.get_error(self.ssl, ret)
            raise ConnectionError("%s: SSL error %d" % (what, err))
        return ret

    def do_handshake(self):
        self._check("SSL_do_handshake", self.lib.do_handshake(self.ssl))

    def recv_into(self, buf):
        n = len(buf)
        tmp = (ctypes.c_char * n)()
        ret = self.lib.read(self.ssl, tmp, n)
        if ret <= 0:
            # close_notify (SSL_ERROR_ZERO_RETURN) or the peer went away
            # without one: end of stream either way.
            return 0
        buf[:ret] = tmp.raw[:ret]
        return ret

    def sendall(self, data):
        data = bytes(data)
        while data:
            n = self._check("SSL_write", self.lib.write(self.ssl, data, len(data)))
            data = data[n:]

    def makefile(self, mode="rb", buffering=-1):
        if "r" not in mode:
            raise ValueError("only reading files: writes go through sendall")
        return io.BufferedReader(_Reader(self), io.DEFAULT_BUFFER_SIZE if buffering in (-1, 0, None) else buffering)

    def settimeout(self, t):
        self.sock.settimeout(t)

    def setsockopt(self, *args):
        self.sock.setsockopt(*args)

    def getpeername(self):
        return self.sock.getpeername()

    def fileno(self):
        return self.sock.fileno()

    def shutdown(self, how):
        if self.ssl:
            self.lib.shutdown(self.ssl)
        self.sock.shutdown(how)

    def close(self):
        if self.ssl:
            self.lib.free(self.ssl)
            self.ssl = None
        self.sock.close()


class _Reader(io.RawIOBase):
    def __init__(self, conn):
        self.conn = conn

    def readable(self):
        return True

    def readinto(self, b):
        return self.conn.recv_into(memoryview(b).cast("B"))


def serve(server, directory, cert, key):
    """Makes server (a socketserver.TCPServer) hand its handler
    Connections of libssl in directory instead of plain sockets."""
    ctx = Context(directory, cert, key)
    accept = server.get_request

    def get_request():
        sock, addr = accept()
        return ctx.wrap(sock), addr

    server.get_request = get_request
    return ctx.lib.version(0).decode()

