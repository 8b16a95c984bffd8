"""A class at once: N visitors open `emolib app` together; each uses the sample photo, then uploads one.

Every visitor must get music both times. Prints (and writes as one JSON line on stdout) the median
and slowest of: page load to usable app, click to audio (sample and upload), open to first audio;
and memory: the summed RSS of the server and its kernels (peak while running, and at the end).
Memory per kernel (largest and median at the end: after a sample photo and an upload) is printed too.
The visitors' browser pages run on this machine as well, so on a small machine the page-load
figures include rendering N pages at once; in a classroom each student's browser does that.
Needs Chromium (/usr/bin/chromium or $EMOLIB_CHROMIUM) and playwright.
Run:  PYTHONPATH=. .venv/bin/python benchmarks/bench_app_visitors.py [--visitors 10] [--pool 2]
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

from tests import browser

READY = browser.AUDIO_READY


def tree_rss_mb(pid: int) -> float:
    """Summed resident memory of a process and all its descendants (server + kernels), in MB."""
    try:
        proc = psutil.Process(pid)
        procs = [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):  # a kernel culled meanwhile
            total += p.memory_info().rss
    return total / 2**20


def kernel_rss_mb(pid: int) -> list[float]:
    """Resident memory of each kernel (ipykernel) process under the server, in MB, largest first."""
    sizes = []
    for p in psutil.Process(pid).children(recursive=True):
        with contextlib.suppress(psutil.NoSuchProcess):
            if "ipykernel" in " ".join(p.cmdline()):
                sizes.append(p.memory_info().rss / 2**20)
    return sorted(sizes, reverse=True)


class Sampler(threading.Thread):
    """Peak summed RSS of the server tree, sampled every half second."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.peak, self.running = pid, 0.0, True

    def run(self) -> None:
        while self.running:
            self.peak = max(self.peak, tree_rss_mb(self.pid))
            time.sleep(0.5)


async def visitor(chromium, url: str, upload: Path, timeout_ms: int, index: int) -> dict:
    """One visitor's timings (seconds)."""
    context = await chromium.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    try:
        t0 = time.perf_counter()
        await page.goto(url, timeout=timeout_ms)
        sample = page.get_by_role("button", name="Use sample photo")
        await sample.wait_for(timeout=timeout_ms)
        usable = time.perf_counter() - t0
        t1 = time.perf_counter()
        await sample.click()
        await page.wait_for_function(READY, arg="", timeout=timeout_ms, polling=250)
        sample_audio = time.perf_counter() - t1
        first_audio = time.perf_counter() - t0
        src = await page.locator("audio").evaluate("a => a.src")
        seed = page.get_by_label("seed")  # the same photo with the same seed makes the same piece: change it
        await seed.fill(str(index + 1))
        await seed.press("Tab")
        t2 = time.perf_counter()
        async with page.expect_file_chooser() as chooser:
            await page.get_by_role("button", name="Upload photo").click()
        await (await chooser.value).set_files(str(upload))
        await page.wait_for_function(READY, arg=src, timeout=timeout_ms, polling=250)
        upload_audio = time.perf_counter() - t2
        return {"usable": usable, "sample_click_to_audio": sample_audio, "open_to_first_audio": first_audio,
                "upload_to_audio": upload_audio}
    except Exception as err:
        shot = Path(tempfile.gettempdir()) / f"bench_app_visitor_{id(page)}.png"
        await page.screenshot(path=str(shot), full_page=True)
        print(f"visitor failed; screenshot {shot}", file=sys.stderr)
        return {"error": f"{type(err).__name__}: {str(err).splitlines()[0]}"}
    finally:
        await context.close()


async def visit_all(url: str, n: int, upload: Path, timeout_ms: int) -> list[dict]:
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        chromium = await p.chromium.launch(executable_path=str(browser.CHROMIUM), headless=True)
        try:
            return await asyncio.gather(*(visitor(chromium, url, upload, timeout_ms, i) for i in range(n)))
        finally:
            await chromium.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--visitors", type=int, default=10)
    parser.add_argument("--pool", type=int, default=2, help="emolib app --pool (preheated kernels)")
    parser.add_argument("--timeout", type=float, default=300, help="seconds a visitor may wait for each step")
    parser.add_argument("--log", type=Path, default=Path(tempfile.gettempdir()) / "bench_app_visitors.log",
                        help="the server's log")
    args = parser.parse_args()
    if browser.missing():
        raise SystemExit(browser.missing())
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        upload = tmp / "upload.jpg"
        upload.write_bytes(browser.SAMPLE_PHOTO.read_bytes())
        proc, url = browser.start_app(tmp / "out", pool=args.pool, log=args.log)
        time.sleep(15)  # a warm server: the preheated kernels have run the app notebook and loaded the models
        idle_mb = tree_rss_mb(proc.pid)
        sampler = Sampler(proc.pid)
        sampler.start()
        t = time.perf_counter()
        try:
            results = asyncio.run(visit_all(url, args.visitors, upload, int(args.timeout * 1000)))
            wall = time.perf_counter() - t
            end_mb = tree_rss_mb(proc.pid)
            per_kernel = kernel_rss_mb(proc.pid)
            kernels = len(per_kernel)
        finally:
            sampler.running = False
            browser.stop_app(proc)
    ok = [r for r in results if "error" not in r]
    report = {"visitors": args.visitors, "pool": args.pool, "with_music": len(ok), "wall_s": round(wall, 1),
              "errors": [r["error"] for r in results if "error" in r], "idle_server_mb": round(idle_mb),
              "peak_server_mb": round(sampler.peak), "end_server_mb": round(end_mb), "kernel_processes": kernels,
              "kernel_mb": {"largest": round(per_kernel[0]) if per_kernel else None,
                            "median": round(statistics.median(per_kernel)) if per_kernel else None}}
    for key in ("usable", "sample_click_to_audio", "upload_to_audio", "open_to_first_audio"):
        values = [r[key] for r in ok]
        if values:
            report[key] = {"median_s": round(statistics.median(values), 2), "slowest_s": round(max(values), 2)}
    for key, value in report.items():
        print(f"{key:>24}: {value}", file=sys.stderr)
    print(json.dumps(report))
    return 0 if len(ok) == args.visitors else 1


if __name__ == "__main__":
    raise SystemExit(main())
