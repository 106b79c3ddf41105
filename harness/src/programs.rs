//! App programs that stand in for the apphost where a test or bench needs a release that
//! misbehaves in a known way (the process driver runs an image's `app/apphost` as given).

/// A Python program serving `NEO_LISTEN` that answers its probes (`/readyz`, `/healthz`) and
/// every other request alternately 500 and 200 (`[]`): a release that fails half its requests.
pub const HALF_FAILING_APP: &str = r#"#!/usr/bin/python3
import http.server, itertools, os
host, port = os.environ["NEO_LISTEN"].rsplit(":", 1)
count = itertools.count()
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        probe = self.path in ("/readyz", "/healthz")
        code = 200 if probe or next(count) % 2 else 500
        body = b"[]"
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer((host, int(port)), Handler).serve_forever()
"#;
