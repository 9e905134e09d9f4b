# A scripted socket server for the kernel-level tests: it does exactly the
# syscalls the test asks for, one command per line, and answers one line
# ("ok ..." or "err ..."). Run with no arguments it talks on stdin/stdout;
# a child made by "fork CMD RESP" talks on those two FIFOs.
import binascii
import ctypes
import os
import socket
import sys
import threading

socks = {}  # fd -> socket object (kept so that the fd stays open)


def sock(fd):
    s = socks.get(fd)
    if s is None:
        s = socket.socket(fileno=fd)
        socks[fd] = s
    return s


def forget(fd):
    s = socks.pop(fd, None)
    if s is not None:
        s.detach()


tls = {}  # fd -> (SSLObject, incoming BIO, outgoing BIO)
tls_ctx = None


def tls_flush(fd):
    out = tls[fd][2]
    while out.pending:
        os.write(fd, out.read())


def hexed(b):
    return binascii.hexlify(b).decode() or "-"


def unhex(s):
    return b"" if s == "-" else binascii.unhexlify(s)


def run(cmd, args, channel):
    if cmd == "listen":
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((args[0] if args else "127.0.0.1", 0))
        s.listen(64)
        socks[s.fileno()] = s
        return "%d %d" % (s.fileno(), s.getsockname()[1])
    if cmd == "connect":
        c = socket.create_connection((args[0], int(args[1])))
        socks[c.fileno()] = c
        return str(c.fileno())
    if cmd == "accept":
        c, _ = sock(int(args[0])).accept()
        socks[c.fileno()] = c
        return str(c.fileno())
    if cmd == "read":
        b = os.read(int(args[0]), int(args[1]) if len(args) > 1 else 65536)
        return "%d %s" % (len(b), hexed(b))
    if cmd == "recv":
        b = sock(int(args[0])).recv(int(args[2]) if len(args) > 2 else 65536, int(args[1]))
        return "%d %s" % (len(b), hexed(b))
    if cmd == "readv":
        bufs = [bytearray(int(n)) for n in args[1].split(",")]
        n = os.readv(int(args[0]), bufs)
        return "%d %s" % (n, hexed(b"".join(bufs)[:n]))
    if cmd == "recvmsg":
        bufs = [bytearray(int(n)) for n in args[1].split(",")]
        n = sock(int(args[0])).recvmsg_into(bufs)[0]
        return "%d %s" % (n, hexed(b"".join(bufs)[:n]))
    if cmd == "write":
        return str(os.write(int(args[0]), unhex(args[1])))
    if cmd == "send":
        return str(sock(int(args[0])).send(unhex(args[1])))
    if cmd == "writev":
        return str(os.writev(int(args[0]), [unhex(a) for a in args[1:]]))
    if cmd == "sendmsg":
        return str(sock(int(args[0])).sendmsg([unhex(a) for a in args[1:]]))
    if cmd == "sendfile":
        with open(args[1], "rb") as f:
            return str(os.sendfile(int(args[0]), f.fileno(), 0, int(args[2])))
    if cmd == "close":
        fd = int(args[0])
        forget(fd)
        os.close(fd)
        return ""
    if cmd == "dup2":
        return str(os.dup2(int(args[0]), int(args[1])))
    if cmd == "socketpair":
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        socks[a.fileno()] = a
        socks[b.fileno()] = b
        return "%d %d" % (a.fileno(), b.fileno())
    if cmd == "sendfd":
        socket.send_fds(sock(int(args[0])), [b"f"], [int(args[1])])
        return ""
    if cmd == "recvfd":
        _, fds, _, _ = socket.recv_fds(sock(int(args[0])), 1, 1)
        return str(fds[0])
    if cmd == "fork":
        pid = os.fork()
        if pid == 0:
            serve(open(args[0], "r"), open(args[1], "w"))
            os._exit(0)
        return str(pid)
    if cmd == "threads-write":
        # n threads each write count times, all at once.
        fd, n, count, data = int(args[0]), int(args[1]), int(args[2]), unhex(args[3])
        go = threading.Barrier(n)

        def writer():
            go.wait()
            for _ in range(count):
                os.write(fd, data)

        ts = [threading.Thread(target=writer) for _ in range(n)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        return ""
    if cmd == "leader-exit":
        # The main thread exits (the exit syscall, not exit_group: the
        # process lives on); a second thread answers and takes over.
        t = threading.Thread(target=serve, args=channel + ("ok",))
        t.start()
        sys_exit = {"x86_64": 60, "aarch64": 93}[os.uname().machine]
        ctypes.CDLL(None).syscall(sys_exit, 0)
    if cmd == "pid":
        return "%d %d" % (os.getpid(), threading.get_native_id())
    if cmd == "tls-init":
        # OpenSSL on memory BIOs, the way Node.js uses it: the helper reads
        # and writes the socket itself, outside any SSL call. Imported
        # here: the other tests map no libssl.
        import ssl

        global tls_ctx
        tls_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls_ctx.load_cert_chain(args[0], args[1])
        return ""
    if cmd == "tls-wrap":
        import ssl

        inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls[int(args[0])] = (tls_ctx.wrap_bio(inc, out, server_side=True), inc, out)
        return ""
    if cmd == "tls-handshake":
        import ssl

        fd = int(args[0])
        obj, inc, out = tls[fd]
        while True:
            try:
                obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                tls_flush(fd)
                b = os.read(fd, 65536)
                if not b:
                    raise ValueError("eof in handshake")
                inc.write(b)
        tls_flush(fd)
        return ""
    if cmd == "tls-recv":
        # Ciphertext from the socket into the connection's BIO.
        b = os.read(int(args[0]), 65536)
        tls[int(args[0])][1].write(b)
        return str(len(b))
    if cmd == "tls-read":
        b = tls[int(args[0])][0].read(65536)
        return "%d %s" % (len(b), hexed(b))
    if cmd == "tls-write":
        fd = int(args[0])
        tls[fd][0].write(unhex(args[1]))
        tls_flush(fd)
        return ""
    if cmd == "exit":
        sys.stdout.flush()
        os._exit(0)
    raise ValueError("unknown command " + cmd)


def serve(cmds, resps, greeting=None):
    resps.write((greeting or "ready %d" % os.getpid()) + "\n")
    resps.flush()
    for line in cmds:
        parts = line.split()
        if not parts:
            continue
        try:
            out = run(parts[0], parts[1:], (cmds, resps))
            resps.write(("ok " + out).rstrip() + "\n")
        except Exception as e:  # the test reads the error
            resps.write("err %s\n" % e)
        resps.flush()


serve(sys.stdin, sys.stdout)
