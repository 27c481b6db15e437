"""A stand-in for the Hugging Face file endpoint, on 127.0.0.1, for `synth models download`.

Serves files of ROOT at /{org}/{name}/resolve/{revision}/{file} with the headers hf-hub reads
(etag, x-repo-commit, content-range) and HTTP range requests. Prints its port, then serves
until stdin closes or 120 s pass. Every request path is appended to ROOT/requests.log.
"""
import hashlib, http.server, os, sys, threading

ROOT = sys.argv[1]
COMMIT = "0123456789abcdef0123456789abcdef01234567"


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        with open(os.path.join(ROOT, "requests.log"), "a") as log:
            log.write(self.path + "\n")
        parts = self.path.lstrip("/").split("/")
        if len(parts) < 5 or parts[2] != "resolve":
            self.send_error(404)
            return
        path = os.path.join(ROOT, parts[0], parts[1], *parts[4:])
        if not os.path.isfile(path):
            self.send_error(404)
            return
        data = open(path, "rb").read()
        start, end = 0, len(data) - 1
        rng = self.headers.get("Range")
        if rng and rng.startswith("bytes="):
            a, _, b = rng[len("bytes="):].partition("-")
            start = int(a or 0)
            end = int(b) if b else len(data) - 1
        body = data[start : end + 1]
        self.send_response(206 if rng else 200)
        self.send_header("etag", '"%s"' % hashlib.sha256(data).hexdigest())
        self.send_header("x-repo-commit", COMMIT)
        self.send_header("content-range", "bytes %d-%d/%d" % (start, end, len(data)))
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
threading.Thread(target=server.serve_forever, daemon=True).start()
threading.Timer(120, lambda: os._exit(0)).start()
sys.stdin.read()
os._exit(0)
