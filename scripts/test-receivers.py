#!/usr/bin/python3
"""The alert receivers of the test run (started by scripts/test.sh, on loopback only).

- SMTP on three ports: plain; STARTTLS required with a login; TLS from the first byte with a
  login. Every message is written to DIR/mail/<recipient>/<n>.eml before the server answers
  250, so a test reads it as soon as the client returns. Recipients whose name starts with
  "reject" are refused with 550, which is how a test meets a failing mail server.
- HTTP: every POST is written to DIR/http/<path>/<n>.json before the answer. A path under
  /status/<code>/ is answered with that code instead of 200.
"""
import argparse
import os
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

_lock = threading.Lock()


def store(directory, data):
    with _lock:
        os.makedirs(directory, exist_ok=True)
        n = len(os.listdir(directory))
        path = os.path.join(directory, f"{n:04d}.tmp")
        with open(path, "wb") as f:
            f.write(data)
        return path


class Mailbox:
    def __init__(self, root):
        self.root = root

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.split("@")[0].startswith("reject"):
            return "550 5.1.1 mailbox unavailable (test receiver refuses reject*)"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        for rcpt in envelope.rcpt_tos:
            tmp = store(os.path.join(self.root, "mail", rcpt), envelope.original_content)
            os.rename(tmp, tmp[:-4] + ".eml")
        return "250 Message accepted"


class Login:
    def __init__(self, user, password):
        self.user, self.password = user.encode(), password.encode()

    def __call__(self, server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login == self.user
            and auth_data.password == self.password
        )
        return AuthResult(success=ok)


class Hooks(BaseHTTPRequestHandler):
    root = ""

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        parts = [p for p in self.path.split("?")[0].split("/") if p]
        code = 200
        if len(parts) >= 2 and parts[0] == "status":
            code = int(parts[1])
        else:
            safe = "_".join(p.replace(".", "_") for p in parts) or "root"
            tmp = store(os.path.join(self.root, "http", safe), body)
            os.rename(tmp, tmp[:-4] + ".json")
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--dir", required=True)
    parser.add_argument("--smtp-port", type=int, required=True)
    parser.add_argument("--starttls-port", type=int, required=True)
    parser.add_argument("--tls-port", type=int, required=True)
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--user", required=True)
    args = parser.parse_args()
    password = os.environ["STRONGBOX_TEST_SMTP_PASSWORD"]

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(args.cert, args.key)
    handler = Mailbox(args.dir)
    login = Login(args.user, password)
    servers = [
        Controller(handler, hostname="127.0.0.1", port=args.smtp_port),
        Controller(
            handler,
            hostname="127.0.0.1",
            port=args.starttls_port,
            tls_context=context,
            require_starttls=True,
            authenticator=login,
            auth_required=True,
        ),
        Controller(
            handler,
            hostname="127.0.0.1",
            port=args.tls_port,
            ssl_context=context,
            authenticator=login,
            auth_required=True,
            # aiosmtpd 1.4 counts only STARTTLS as TLS; this connection is TLS throughout.
            auth_require_tls=False,
            server_hostname="localhost",
        ),
    ]
    for server in servers:
        server.start()
    Hooks.root = args.dir
    ThreadingHTTPServer(("127.0.0.1", args.http_port), Hooks).serve_forever()


if __name__ == "__main__":
    main()
