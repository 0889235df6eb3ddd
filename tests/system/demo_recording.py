"""The README's moving pictures: Playwright's video of a browser test, as a GIF.

Only ``make screenshots`` records (it sets ``SCREENSHOTS_DIR``); ``make test``
records nothing and is not slowed down. Recording needs Debian's ``ffmpeg``
twice: Playwright's video recorder runs it to write WebM, and it turns the
WebM into a GIF with a palette made for that clip.

Playwright looks for its own ffmpeg build at
``$PLAYWRIGHT_BROWSERS_PATH/ffmpeg-<revision>/ffmpeg-linux`` (the revision is in
its ``browsers.json``), which ``playwright install`` would download. It cannot
here, and any ffmpeg with libvpx-vp9 does the job, so the recorder points a
private ``PLAYWRIGHT_BROWSERS_PATH`` at the system's.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

#: Set by ``make screenshots``: where the pictures go. Unset: nothing is recorded.
SCREENSHOTS_DIR = os.environ.get("SCREENSHOTS_DIR") or None
RECORDING = SCREENSHOTS_DIR is not None

#: While recording, each provider call waits this long before it is passed on,
#: so every step, retry and undo stays on the page for a poll or two. The
#: scenarios themselves keep the timings they ship with.
RECORDING_PROVIDER_DELAY_S = 1.0

#: What the browser shows (and the video records), and the GIF made from it.
VIDEO_SIZE = {"width": 1000, "height": 800}
GIF_WIDTH = 720
GIF_FPS = 8
#: How long the GIF holds the outcome before it loops.
GIF_HOLD_S = 3.0
#: The README embeds the GIFs: each must stay small.
GIF_MAX_BYTES = 1_000_000

_HOP_BY_HOP = {"host", "connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding"}


def ffmpeg() -> str:
    found = shutil.which("ffmpeg")
    if not found:
        raise RuntimeError("recording the README's GIFs needs ffmpeg: apt-get install ffmpeg")
    return found


def playwright_browsers_path(root: Path) -> Path:
    """A ``PLAYWRIGHT_BROWSERS_PATH`` whose ffmpeg is the system's (see the module docstring)."""
    import playwright

    browsers = Path(playwright.__file__).parent / "driver" / "package" / "browsers.json"
    [revision] = [b["revision"] for b in json.loads(browsers.read_text())["browsers"] if b["name"] == "ffmpeg"]
    target = root / f"ffmpeg-{revision}" / "ffmpeg-linux"
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.exists():
        target.symlink_to(ffmpeg())
    return root


def webm_to_gif(video: Path, gif: Path) -> None:
    """One palette per clip (diff stats: the pixels that change count most),
    only the changed rectangle per frame, and the last frame held."""
    graph = (
        f"fps={GIF_FPS},scale={GIF_WIDTH}:-1:flags=lanczos,"
        f"tpad=stop_mode=clone:stop_duration={GIF_HOLD_S},split[a][b];"
        "[a]palettegen=max_colors=128:stats_mode=diff[p];"
        "[b][p]paletteuse=dither=none:diff_mode=rectangle"
    )
    subprocess.run(
        [ffmpeg(), "-v", "error", "-y", "-i", str(video), "-vf", graph, "-loop", "0", str(gif)],
        check=True,
        timeout=120,
    )


class _SlowHandler(BaseHTTPRequestHandler):
    server: SlowProxy

    def _forward(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        # The injected latency itself, in the proxy's own thread: nothing waits on it but the call.
        time.sleep(self.server.delay_s)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
        url = self.server.upstream + self.path
        answer = httpx.request(self.command, url, content=body, headers=headers, timeout=30)
        self.send_response(answer.status_code)
        for key, value in answer.headers.items():
            if key.lower() not in _HOP_BY_HOP:
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(answer.content)))
        self.end_headers()
        self.wfile.write(answer.content)

    do_GET = do_POST = do_PUT = do_DELETE = _forward

    def log_message(self, format: str, *args: object) -> None:
        pass


class SlowProxy(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, upstream: str, delay_s: float) -> None:
        super().__init__(("127.0.0.1", 0), _SlowHandler)
        self.upstream = upstream.rstrip("/")
        self.delay_s = delay_s


@contextmanager
def slow_providers(upstream: str, delay_s: float = RECORDING_PROVIDER_DELAY_S) -> Iterator[str]:
    """The provider service at ``upstream``, every call ``delay_s`` later: yields its URL."""
    proxy = SlowProxy(upstream, delay_s)
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{proxy.server_address[1]}"
    finally:
        proxy.shutdown()
        proxy.server_close()
        thread.join(timeout=10)
