"""The web client's origin, http://localhost:PORT (a secure context, so service workers and the
Push API work without TLS). It serves the client developer's examples exactly as they are in
examples/ (the demo page at /), the test's page at /test/, and strophe.js from the npm package.

Run alone (tests/browser/demo-page), it serves the demo page for trying a real browser by hand:
    python webserver.py [--port 8000]
"""

import argparse
import asyncio
import os

from aiohttp import web

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
EXAMPLES = os.path.join(ROOT, "examples")
NODE_MODULES = os.path.join(HERE, "node_modules")

# URL path -> file. The service worker sits at the root so that its scope is the whole origin.
FILES = {
    "/": os.path.join(EXAMPLES, "demo.html"),
    "/demo.html": os.path.join(EXAMPLES, "demo.html"),
    "/service-worker.js": os.path.join(EXAMPLES, "service-worker.js"),
    "/subscribe.js": os.path.join(EXAMPLES, "subscribe.js"),
    "/test/": os.path.join(HERE, "page", "index.html"),
    "/test/harness.js": os.path.join(HERE, "page", "harness.js"),
    "/node_modules/strophe.js/dist/strophe.esm.js": os.path.join(NODE_MODULES, "strophe.js", "dist", "strophe.esm.js"),
}

TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8"}


class WebServer:
    def __init__(self, port=0):
        self.port = port
        self.requests = []
        self._runner = None

    async def start(self):
        for path in FILES.values():
            if not os.path.isfile(path):
                raise FileNotFoundError(f"{path} is missing (tests/browser/run installs strophe.js)")
        app = web.Application()
        app.router.add_get("/{path:.*}", self._serve)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]
        return self

    @property
    def origin(self):
        return f"http://localhost:{self.port}"

    async def _serve(self, request):
        self.requests.append(request.path)
        path = FILES.get(request.path)
        if path is None:
            return web.Response(status=404)
        with open(path, "rb") as f:
            body = f.read()
        # no-cache: each run serves the examples as they are now.
        return web.Response(body=body, headers={
            "Content-Type": TYPES[os.path.splitext(path)[1]], "Cache-Control": "no-cache",
        })

    async def close(self):
        if self._runner is not None:
            await self._runner.cleanup()


async def serve_forever(port):
    server = await WebServer(port).start()
    print(f"Serving the demo page at {server.origin}/ (Ctrl-C stops)", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await server.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Serve examples/demo.html on http://localhost")
    parser.add_argument("--port", type=int, default=8000)
    try:
        asyncio.run(serve_forever(parser.parse_args().port))
    except KeyboardInterrupt:
        pass
