"""The web console at /ui/: static files of src/wirt/serve/web plus xterm.js from its npm
packages (web/node_modules, installed with a lockfile by `make webui`, never committed).
Nothing is loaded from the internet: the page, the terminal and its styles all come from here.

Over TCP, open /ui/?token=TOKEN once: the server sets the token as an HttpOnly, SameSite=Strict
cookie and redirects to /ui/, so the page's API calls and websockets carry it.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from wirt.serve.app import HOME, error
from wirt.vm import events

__all__ = ["register", "WEB", "VENDOR"]

WEB = Path(__file__).parent / "web"
#: /ui/vendor/NAME -> the file in web/node_modules (package.json pins the versions)
VENDOR = {
    "xterm.js": "@xterm/xterm/lib/xterm.js",
    "xterm.css": "@xterm/xterm/css/xterm.css",
    "addon-fit.js": "@xterm/addon-fit/lib/addon-fit.js",
}
STATIC = {"app.js": "application/javascript", "style.css": "text/css"}
MISSING = "the web console's packages are not installed; run `make webui` (npm install in src/wirt/serve/web)"


def register(app: web.Application) -> None:
    async def root(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/ui/")

    async def index(request: web.Request) -> web.StreamResponse:
        if not (WEB / "node_modules" / VENDOR["xterm.js"]).is_file():
            return error(503, MISSING)
        html = (WEB / "index.html").read_text()
        # the event stream starts after the newest event: older ones are already in the list
        last = events.last_id(request.app[HOME])
        html = html.replace("<script src=\"app.js\">", f"<script>window.WIRT_LAST_EVENT = {last};</script>"
                                                       "<script src=\"app.js\">")
        return web.Response(text=html, content_type="text/html", headers={"Cache-Control": "no-store"})

    async def static(request: web.Request) -> web.StreamResponse:
        name = request.match_info["file"]
        if name not in STATIC:
            return error(404, f"no file {name!r} in the web console")
        return web.FileResponse(WEB / name, headers={"Content-Type": STATIC[name]})

    async def vendor(request: web.Request) -> web.StreamResponse:
        name = request.match_info["file"]
        if name not in VENDOR:
            return error(404, f"no file {name!r} in the web console")
        path = WEB / "node_modules" / VENDOR[name]
        if not path.is_file():
            return error(503, MISSING)
        return web.FileResponse(path)

    app.router.add_get("/", root)
    app.router.add_get("/ui/", index)
    app.router.add_get("/ui/vendor/{file}", vendor)
    app.router.add_get("/ui/{file}", static)
