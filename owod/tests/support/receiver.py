#!/usr/bin/env python3
"""A real HTTP(S) collector for owod's tests: it appends the body of every POST to a file and
answers 200 (or --status, and then it keeps nothing). A hostile one with --hang-first N (reads
the first N POSTs and never answers) or --drop-first N (closes the connection halfway through
reading each of the first N POSTs, or of the N after the hung ones). With --cert/--key it speaks TLS; with --client-ca it demands a client certificate
signed by that CA. With --go-manager it takes POSTs as the Go agent's manager did: one JSON object
a body, sent as application/json (else 400), and it keeps, a line each, the path, the content
type, the X-Agent-* headers and the object. It prints its port on the first line of stdout once
it listens."""
import argparse
import http.server
import json
import os
import ssl
import sys
import threading


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--out", required=True)
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--client-ca")
    p.add_argument("--status", type=int, default=200)
    p.add_argument(
        "--refuse-odd",
        action="store_true",
        help="answer an Elasticsearch bulk body with item errors: every other record refused",
    )
    p.add_argument(
        "--bulk",
        action="store_true",
        help="take Elasticsearch bulk bodies: answer each create action, keep the documents",
    )
    p.add_argument("--hang-first", type=int, default=0)
    p.add_argument("--drop-first", type=int, default=0)
    p.add_argument("--go-manager", action="store_true")
    args = p.parse_args()
    posts = [0]
    forever = threading.Event()
    # One append at a time, each in one write: concurrent POSTs never interleave in the file.
    lock = threading.Lock()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):
            length = int(self.headers.get("Content-Length", 0))
            with lock:
                posts[0] += 1
                n = posts[0]
            if n <= args.hang_first:
                self.rfile.read(length)
                forever.wait()
            if n <= args.hang_first + args.drop_first:
                self.rfile.read(length // 2)
                self.close_connection = True
                self.connection.shutdown(2)
                return
            body = self.rfile.read(length)
            if args.go_manager:
                try:
                    envelope = json.loads(body)
                except ValueError:
                    envelope = None
                if (
                    not isinstance(envelope, dict)
                    or self.headers.get("Content-Type") != "application/json"
                ):
                    self.send_response(400)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = (json.dumps({
                    "path": self.path,
                    "content_type": self.headers.get("Content-Type"),
                    "x_agent_name": self.headers.get("X-Agent-Name"),
                    "x_agent_hostname": self.headers.get("X-Agent-Hostname"),
                    "envelope": envelope,
                }) + "\n").encode()
            if args.status != 200:
                self.send_response(args.status)
                self.send_header("Content-Length", "7")
                self.end_headers()
                self.wfile.write(b"refused")
                return
            answer = b"ok"
            if args.refuse_odd or args.bulk:
                # Bulk: an action line, then the record. Keep the even ones (or all).
                lines = body.splitlines()
                docs = lines[1::2]
                if any(json.loads(a) != {"create": {}} for a in lines[0::2]):
                    self.send_response(400)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                items, kept = [], b""
                for i, doc in enumerate(docs):
                    if args.refuse_odd and i % 2:
                        items.append(
                            '{"create":{"status":400,"error":{"type":"mapper_parsing_exception"}}}'
                        )
                    else:
                        items.append('{"create":{"status":201}}')
                        kept += doc + b"\n"
                errors = "true" if args.refuse_odd else "false"
                answer = ('{"errors":' + errors + ',"items":[' + ",".join(items) + "]}").encode()
                body = kept
            with lock:
                fd = os.open(args.out, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
                try:
                    view = memoryview(body)
                    while view:
                        view = view[os.write(fd, view):]
                finally:
                    os.close(fd)
            self.send_response(200)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *a):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    if args.cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.cert, args.key)
        if args.client_ca:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(args.client_ca)
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
