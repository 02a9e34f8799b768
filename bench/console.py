"""The console's room grid for a 2,000-device hotel: first paint, and live under load.

One hotel on real processes (bench/_hotel.py: Mosquitto, `bellhop edge run`, `bellhop sim`
with 2,000 devices reporting every INTERVAL_S), `bellhop console --lan` in front of it, and
Debian's chromium (Playwright, headless) signed in with a LAN staff token.

- `first_paint_ms`: the browser's `first-contentful-paint` (Performance API) of the grid
  page (`/hotels/{h}`: every room's tile, rendered on the server from the hotel's picture
  in memory, or from a fresh read while the picture is not current), the median of
  PAINTS fresh navigations.
- floor, in the same run: the same grid's HTML (fetched from the console once, its script
  tag removed) served as a static page, with the same stylesheet, by a bare Starlette app;
  `floor_first_paint_ms` the same way, `paint_ratio` the console's over the floor's.
- `event_to_dom_p99_ms`: while the simulator runs and commands switch random lights
  (COMMANDS_PER_S over the LAN API), each state event the page applies: from the device's
  report time (`updated_at`) to the animation frame after the page's handler changed the
  DOM (an init script wraps the page's SSE listener; same machine, same clock).

    .venv/bin/python bench/console.py [--quick]

`--quick`: 15 s of load (< 60 s in all); without it, 60 s. Prints one JSON object last.
Targets: first paint <= 1,000 ms and <= 2x the floor; event to DOM p99 <= 500 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Final

sys.path.insert(0, str(Path(__file__).resolve().parent))
import httpx
import uvicorn
from _hotel import hotel
from _load import ROOT, percentile, report
from bellhop_sdk import BellhopClient, BellhopError, StaticToken
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

DEVICES: Final = 2000
INTERVAL_S: Final = 10.0
PAINTS: Final = 5
COMMANDS_PER_S: Final = 20
CHROMIUM: Final = "/usr/bin/chromium"
STATIC: Final = ROOT / "console" / "src" / "bellhop_console" / "static"
# Wraps the page's SSE listener: after each state event is applied, the next frame's time.
PROBE: Final = """
window.__lat = [];
const add = EventSource.prototype.addEventListener;
EventSource.prototype.addEventListener = function (type, fn, opts) {
  if (type !== "update") return add.call(this, type, fn, opts);
  return add.call(this, type, function (e) {
    fn.call(this, e);
    const m = JSON.parse(e.data);
    if (m.type === "state" && m.data && m.data.updated_at) {
      const t0 = Date.parse(m.data.updated_at);
      requestAnimationFrame(() => window.__lat.push(Date.now() - t0));
    }
  }, opts);
};
"""
PAINT_JS: Final = """() => new Promise(resolve => {
  const done = () => {
    const e = performance.getEntriesByName("first-contentful-paint")[0];
    if (e) resolve(e.startTime); else setTimeout(done, 20);
  };
  done();
})"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not answer in {timeout} s")
        time.sleep(0.05)


async def wait_online(lan: str, token: str, hotel_id: str, want: int, timeout: float) -> None:
    async with BellhopClient(lan_target=lan, credentials=StaticToken(token)) as client:
        deadline = time.monotonic() + timeout
        while True:
            online = sum(d.online for d in await client.devices(hotel_id))
            if online >= want:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{online} of {want} devices online after {timeout} s")
            await asyncio.sleep(0.5)


async def switch_lights(
    lan: str, token: str, hotel_id: str, lights: list[str], stop: threading.Event
) -> int:
    """Commands at COMMANDS_PER_S to random lights until `stop`; how many succeeded."""
    done = 0
    async with BellhopClient(lan_target=lan, credentials=StaticToken(token)) as client:

        async def one(device: str) -> None:
            nonlocal done
            try:
                await client.send_command(
                    hotel_id, device, "set_light", {"on": random.random() < 0.5}, timeout_s=5
                )
                done += 1
            except BellhopError:
                pass

        tasks: set[asyncio.Task[None]] = set()
        while not stop.is_set():
            task = asyncio.create_task(one(random.choice(lights)))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            await asyncio.sleep(1 / COMMANDS_PER_S)
        await asyncio.gather(*tasks)
    return done


def floor_app(html: str) -> Starlette:
    async def grid(request: Request) -> Response:
        return HTMLResponse(html)

    return Starlette(routes=[Route("/grid", grid), Mount("/static", StaticFiles(directory=STATIC))])


def paints(page: Any, url: str) -> float:
    values = []
    for _ in range(PAINTS):
        page.goto(url, wait_until="load")
        values.append(float(page.evaluate(PAINT_JS)))
    return statistics.median(values)


def measure(quick: bool) -> dict[str, Any]:
    from playwright.sync_api import expect, sync_playwright

    load_s = 15.0 if quick else 60.0
    with tempfile.TemporaryDirectory(prefix="bench-console-") as tmp:
        workdir = Path(tmp)
        hotel_id = "htl_bench_console"
        with hotel(workdir, devices=DEVICES, interval_s=INTERVAL_S, hotel_id=hotel_id) as h:
            lan = f"127.0.0.1:{h.api_port}"
            asyncio.run(wait_online(lan, h.token, hotel_id, int(DEVICES * 0.99), 60))
            port = free_port()
            log = (workdir / "console.log").open("wb")
            console = subprocess.Popen(
                [str(ROOT / ".venv/bin/bellhop"), "console", "--listen", f"127.0.0.1:{port}",
                 "--lan", lan],
                stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
            floor_port = free_port()
            floor_server: uvicorn.Server | None = None
            floor_thread: threading.Thread | None = None
            try:
                base = f"http://127.0.0.1:{port}"
                wait_http(f"{base}/healthz", 20)
                args = ["--no-sandbox"] if os.geteuid() == 0 else []
                with sync_playwright() as pw:
                    browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)
                    context = browser.new_context(viewport={"width": 1280, "height": 900})
                    context.set_default_timeout(30_000)
                    context.add_init_script(PROBE)
                    page = context.new_page()
                    page.goto(f"{base}/login")
                    page.get_by_label("Staff token").fill(h.token)
                    page.get_by_role("button", name="Sign in on the LAN").click()
                    page.wait_for_url(re.compile(r"/hotels$"))
                    grid_url = f"{base}/hotels/{hotel_id}"
                    first_paint = paints(page, grid_url)
                    tiles = page.locator("li.tile").count()

                    # The floor: the same HTML, static, from a bare Starlette app.
                    html = page.content()
                    html = re.sub(r"<script[^>]*src=[^>]*></script>", "", html)
                    floor_server = uvicorn.Server(
                        uvicorn.Config(
                            floor_app(html), host="127.0.0.1", port=floor_port,
                            log_level="warning",
                        )
                    )  # fmt: skip
                    floor_thread = threading.Thread(target=floor_server.run, daemon=True)
                    floor_thread.start()
                    wait_http(f"http://127.0.0.1:{floor_port}/grid", 10)
                    floor_page = context.new_page()
                    floor_paint = paints(floor_page, f"http://127.0.0.1:{floor_port}/grid")
                    floor_page.close()

                    # Live under load.
                    page.goto(grid_url, wait_until="load")
                    expect(page.locator("#live-state")).to_contain_text("live", timeout=30_000)
                    lights = [d for d in h.device_ids if "light" in d]
                    stop = threading.Event()
                    sent: list[int] = []
                    driver = threading.Thread(
                        target=lambda: sent.append(
                            asyncio.run(switch_lights(lan, h.token, hotel_id, lights, stop))
                        )
                    )
                    driver.start()
                    deadline = time.monotonic() + load_s
                    while time.monotonic() < deadline:
                        page.wait_for_timeout(250)  # lets the page run; nothing waits on it
                    stop.set()
                    driver.join(timeout=30)
                    page.wait_for_timeout(1000)  # the last commands' events reach the page
                    latencies = [float(v) for v in page.evaluate("window.__lat")]
                    browser.close()
            finally:
                if floor_server is not None:
                    floor_server.should_exit = True
                if floor_thread is not None:
                    floor_thread.join(timeout=10)
                console.terminate()
                console.wait(timeout=20)
                log.close()
    return {
        "devices": DEVICES,
        "rooms": tiles,
        "first_paint_ms": round(first_paint, 1),
        "floor_first_paint_ms": round(floor_paint, 1),
        "paint_ratio": round(first_paint / floor_paint, 3) if floor_paint else None,
        "events_applied": len(latencies),
        "commands_succeeded": sent[0] if sent else 0,
        "event_to_dom_p50_ms": round(percentile(latencies, 50), 1),
        "event_to_dom_p99_ms": round(percentile(latencies, 99), 1),
        "load_s": load_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="15 s of load (< 60 s in all)")
    args = parser.parse_args()
    report(measure(args.quick))


if __name__ == "__main__":
    main()
