#!/usr/bin/env python
"""Open HTML reports in headless Chromium and fail on what a reader would hit.

For each file (or every ``*.html`` under a folder), through the DevTools protocol:

- JavaScript errors (uncaught exceptions, ``console.error``, error log entries);
- images that did not load (``<img>`` not complete or with zero natural width);
- requests that leave the file (anything but ``file:``, ``data:``, ``blob:`` or ``about:``: the
  report must open offline);
- empty sections (a ``<section>`` with a heading and nothing a reader can look at);
- a page wider than the window (it scrolls sideways: wide pictures must scale or scroll in their box);
- raw dumps left in the visible text (``{"key": ...`` / ``{'key': ...``: JSON or Python reprs);
- an empty page.

A full-page screenshot of each file is saved (``--screenshots``, default ``html-check/``).
Exit status 0 when every file passes, 1 otherwise, 2 when Chromium or websocket-client is missing.

    python scripts/check_html.py runs/demo-*/report.html runs/prune-*/ --screenshots shots/

Chromium: Debian's ``chromium`` package (``apt-get install -y chromium``) or ``$CHROMIUM``.
Client: ``websocket-client`` (in the ``dev`` extra).
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
RAW_DUMP = re.compile(r"""\{\s*["'][^"'\n]{1,60}["']\s*:\s*""")
LOCAL_SCHEMES = ("file:", "data:", "blob:", "about:", "chrome-error:", "devtools:")

CHECK_PAGE = r"""
(() => {
  const out = {badImages: [], emptySections: [], text: 0, dumps: []};
  for (const img of Array.from(document.images)) {
    if (!(img.complete && img.naturalWidth > 0)) out.badImages.push(img.alt || img.src.slice(0, 80));
  }
  for (const s of Array.from(document.querySelectorAll('section'))) {
    const heading = s.querySelector('h1,h2,h3,h4');
    const media = s.querySelectorAll('img,svg,table,canvas,.tokens,.matrix-view,pre,ul,ol').length;
    let text = (s.innerText || '').trim();
    if (heading) text = text.replace((heading.innerText || '').trim(), '').trim();
    if (media === 0 && text.length < 40) out.emptySections.push(heading ? heading.innerText : '(untitled)');
  }
  const body = document.body ? document.body.innerText : '';
  out.text = body.trim().length;
  out.visible = body;
  out.overflow = document.documentElement.scrollWidth - window.innerWidth;
  return out;
})()
"""


def find_chromium() -> str | None:
    explicit = os.environ.get("CHROMIUM")
    if explicit:
        return explicit if shutil.which(explicit) or os.path.exists(explicit) else None
    for name in CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


class Browser:
    """One headless Chromium and one page, driven over the DevTools websocket."""

    def __init__(self, binary: str, width: int = 1280, timeout: float = 30.0):
        import websocket  # websocket-client

        self.profile = tempfile.mkdtemp(prefix="attrtools-chromium-")
        args = [binary, "--headless=new", "--disable-gpu", "--no-first-run", "--no-default-browser-check",
                "--disable-extensions", "--disable-background-networking", "--disable-sync",
                "--remote-debugging-port=0", f"--user-data-dir={self.profile}", f"--window-size={width},900",
                "--hide-scrollbars", "about:blank"]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            args.insert(1, "--no-sandbox")  # Chromium refuses to run as root with its sandbox
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.width, self.timeout = width, timeout
        port_file = Path(self.profile) / "DevToolsActivePort"
        deadline = time.time() + timeout
        while not port_file.exists() or not port_file.read_text().strip():
            if self.process.poll() is not None or time.time() > deadline:
                self.close()
                raise RuntimeError("Chromium did not start (no DevToolsActivePort)")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=timeout) as response:
            targets = json.load(response)
        page = next(t for t in targets if t.get("type") == "page")
        self.ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=timeout,
                                              suppress_origin=True)
        self.next_id = 0
        self.events: list[dict] = []
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.call(f"{domain}.enable")

    def call(self, method: str, **params) -> dict:
        self.next_id += 1
        ident = self.next_id
        self.ws.send(json.dumps({"id": ident, "method": method, "params": params}))
        deadline = time.time() + self.timeout
        while time.time() < deadline:
            message = json.loads(self.ws.recv())
            if message.get("id") == ident:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            if "method" in message:
                self.events.append(message)
        raise TimeoutError(method)

    def wait_event(self, name: str, timeout: float) -> bool:
        deadline = time.time() + timeout
        if any(e["method"] == name for e in self.events):
            return True
        while time.time() < deadline:
            self.ws.settimeout(max(0.05, deadline - time.time()))
            try:
                message = json.loads(self.ws.recv())
            except Exception:  # timeout
                break
            finally:
                self.ws.settimeout(self.timeout)
            if "method" in message:
                self.events.append(message)
                if message["method"] == name:
                    return True
        return False

    def check(self, path: Path, screenshot: Path | None, settle: float = 0.5) -> list[str]:
        """Problems found on ``path`` (empty list: passed); saves a full-page screenshot."""
        self.events = []
        self.call("Emulation.setDeviceMetricsOverride", width=self.width, height=900, deviceScaleFactor=1,
                  mobile=False)
        self.call("Page.navigate", url=path.resolve().as_uri())
        if not self.wait_event("Page.loadEventFired", self.timeout):
            return ["page did not finish loading"]
        self.wait_event("__settle__", settle)  # let inline scripts run and report
        problems = []
        result = self.call("Runtime.evaluate", expression=CHECK_PAGE, returnByValue=True)
        page = result.get("result", {}).get("value") or {}
        for event in self.events:
            method, params = event["method"], event.get("params", {})
            if method == "Runtime.exceptionThrown":
                details = params.get("exceptionDetails", {})
                text = details.get("exception", {}).get("description") or details.get("text")
                problems.append(f"JavaScript error: {str(text).splitlines()[0]}")
            elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                args = " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))
                problems.append(f"console.{params['type']}: {args[:200]}")
            elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
                problems.append(f"browser error: {params['entry'].get('text', '')[:200]}")
            elif method == "Network.requestWillBeSent":
                url = params.get("request", {}).get("url", "")
                if not url.startswith(LOCAL_SCHEMES):
                    problems.append(f"external request (not self-contained): {url[:120]}")
            elif method == "Network.loadingFailed" and not params.get("canceled"):
                problems.append(f"resource failed to load: {params.get('errorText')}")
        problems += [f"image did not load: {name}" for name in page.get("badImages", [])]
        problems += [f"empty section: {name}" for name in page.get("emptySections", [])]
        if page.get("overflow", 0) > 20:
            problems.append(f"page is {page['overflow']} px wider than a {self.width}-px window (scrolls sideways)")
        if not page.get("text"):
            problems.append("page shows no text")
        dump = RAW_DUMP.search(page.get("visible", ""))
        if dump:
            start = max(0, dump.start() - 30)
            problems.append(f"raw JSON/repr in the visible text: …{page['visible'][start: dump.end() + 40]!r}")
        if screenshot is not None:
            metrics = self.call("Page.getLayoutMetrics")
            size = metrics.get("cssContentSize") or metrics.get("contentSize") or {}
            height = int(min(16000, max(600, size.get("height", 900))))
            width = int(min(4000, max(self.width, size.get("width", self.width))))
            self.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1,
                      mobile=False)
            shot = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            screenshot.write_bytes(base64.b64decode(shot["data"]))
        return list(dict.fromkeys(problems))

    def close(self):
        try:
            if getattr(self, "ws", None) is not None:
                self.ws.close()
        finally:
            if self.process.poll() is None:
                self.process.terminate()
                try:
                    self.process.wait(10)
                except subprocess.TimeoutExpired:
                    self.process.kill()
            shutil.rmtree(self.profile, ignore_errors=True)


def collect(paths) -> list[Path]:
    files = []
    for item in paths:
        p = Path(item)
        files += sorted(p.rglob("*.html")) if p.is_dir() else [p]
    return files


def shot_name(path: Path, root: Path | None) -> str:
    try:
        rel = path.resolve().relative_to(root.resolve()) if root else Path(path.name)
    except ValueError:
        rel = Path(path.name)
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(rel.with_suffix(""))) + ".png"


def check_files(paths, screenshots: str | None = "html-check", binary: str | None = None, log=print) -> dict:
    """``{path: [problems]}`` for every HTML file in ``paths``; screenshots under ``screenshots``."""
    binary = binary or find_chromium()
    if binary is None:
        raise FileNotFoundError("no Chromium found (apt-get install -y chromium, or set $CHROMIUM)")
    files = collect(paths)
    root = Path(os.path.commonpath([str(f.resolve().parent) for f in files])) if files else None
    out = Path(screenshots) if screenshots else None
    results = {}
    browser = Browser(binary)
    try:
        for f in files:
            shot = out / shot_name(f, root) if out else None
            problems = browser.check(f, shot)
            results[str(f)] = problems
            log(("ok    " if not problems else "FAIL  ") + str(f) + (f"  -> {shot}" if shot else ""))
            for p in problems:
                log(f"      {p}")
    finally:
        browser.close()
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="+", help="HTML files or folders (searched for *.html)")
    parser.add_argument("--screenshots", default="html-check", help="folder for the PNG screenshots ('' for none)")
    parser.add_argument("--chromium", default=None, help="browser binary (default: chromium on PATH or $CHROMIUM)")
    args = parser.parse_args(argv)
    try:
        import websocket  # noqa: F401
    except ImportError:
        print("check_html: websocket-client is not installed (pip install websocket-client)", file=sys.stderr)
        return 2
    try:
        results = check_files(args.paths, args.screenshots or None, args.chromium)
    except FileNotFoundError as err:
        print(f"check_html: {err}", file=sys.stderr)
        return 2
    if not results:
        print("check_html: no HTML files found", file=sys.stderr)
        return 1
    failed = [p for p, problems in results.items() if problems]
    print(f"{len(results) - len(failed)} of {len(results)} file(s) passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
