"""Silent-socket flooder, run as a subprocess by test_conn_flood.py.

``python silent_flood.py HOST PORT N`` opens N TCP connections to HOST:PORT
that never send a byte, and re-opens each one the victim closes, until its
stdin closes. It prints ``ready`` once N are open, then on request (a line on
stdin) the number of sockets it has (re)opened so far.
"""

from __future__ import annotations

import selectors
import socket
import sys


def main() -> None:
    host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    sel = selectors.DefaultSelector()
    opened = 0

    def open_one() -> None:
        nonlocal opened
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        try:
            s.connect((host, port))
        except OSError:
            s.close()
            return
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, "sock")
        opened += 1

    for _ in range(n):
        open_one()
    sel.register(sys.stdin, selectors.EVENT_READ, "stdin")
    print("ready", flush=True)
    while True:
        for key, _ in sel.select():
            if key.data == "stdin":
                line = sys.stdin.readline()
                if not line:
                    return
                print(opened, flush=True)
                continue
            s = key.fileobj
            try:
                data = s.recv(4096)  # type: ignore[union-attr]
            except OSError:
                data = b""
            if not data:  # closed by the victim: keep the flood at N
                sel.unregister(s)
                s.close()  # type: ignore[union-attr]
                open_one()


if __name__ == "__main__":
    main()
