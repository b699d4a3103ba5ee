"""The browser check of issue 21: headless Chromium drives JupyterLab, in a fresh clone, through what a user does.

    make browser-check                         (or: .venv/bin/python tools/browser_check.py [--clone DIR])

1. Clones this repository's HEAD (committed work only) into ``--clone`` (default: a folder under /tmp, reused by a
   later check: reset to HEAD and cleaned, its .venv kept) and runs ``make install`` there.
2. Starts ``make lab`` there on 127.0.0.1 (no browser; the app exposed to the page's scripts so that the check can
   call JupyterLab's own commands: open, run all, save).
3. Starts Debian's headless Chromium and drives it over its DevTools protocol (a WebSocket: websocket-client,
   which Jupyter already installs, so no package beyond the project's): opens notebook 01, checks that it starts on
   the kernel repro-vit without asking, runs all cells at smoke, saves, reloads the page and opens it again.
4. Fails on: an error output, "Error displaying widget", a widget output, an empty stderr strip, a formula rendered
   in an output, a reopened notebook without its outputs, no interactive results in lab/results, and any change
   to a tracked file (``git status --porcelain``) at the end.

Prints what it saw and how long each step took; exit status 0 when everything passed.
"""
from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = "notebooks/01_pretrain_and_transfer.ipynb"
KERNEL = "repro-vit"
DEFAULT_CLONE = Path(tempfile.gettempdir()) / "repro-vit-browser-check"


class CheckFailed(AssertionError):
    pass


def step(name: str, started: float) -> None:
    print(f"[browser-check] {name} ({time.perf_counter() - started:.0f} s so far)", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(what: str, probe, timeout: float, every: float = 1.0):
    """``probe()`` until it returns something true; its value. CheckFailed naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = probe()
            if last:
                return last
        except (OSError, ValueError, KeyError) as err:
            last = err
        time.sleep(every)
    raise CheckFailed(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")


def fresh_clone(clone: Path) -> None:
    """``clone`` holding this repository's HEAD: cloned, or (a clone left by an earlier check) reset to HEAD and
    cleaned of everything but its .venv."""
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    if (clone / ".git").is_dir():
        subprocess.run(["git", "fetch", "-q", str(REPO), head.strip()], cwd=clone, check=True)
        subprocess.run(["git", "reset", "-q", "--hard", head.strip()], cwd=clone, check=True)
        subprocess.run(["git", "clean", "-q", "-fdx", "-e", ".venv"], cwd=clone, check=True)
    else:
        if clone.exists():
            shutil.rmtree(clone)
        subprocess.run(["git", "clone", "-q", "--no-hardlinks", str(REPO), str(clone)], check=True)
        subprocess.run(["git", "checkout", "-q", head.strip()], cwd=clone, check=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO, capture_output=True,
                           text=True).stdout
    if dirty:
        print("[browser-check] note: uncommitted changes of this checkout are not in the clone", flush=True)


class DevTools:
    """Chromium's DevTools protocol over one page's WebSocket: ``call`` a method, ``js`` an expression."""

    def __init__(self, ws_url: str):
        import websocket  # websocket-client, a dependency of jupyter_server

        self.ws = websocket.create_connection(ws_url, timeout=120, suppress_origin=True)
        self.next_id = 0

    def call(self, method: str, **params) -> dict:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise CheckFailed(f"{method}: {message['error']}")
                return message["result"]

    def js(self, expression: str):
        """The value of a JavaScript expression in the page (a promise is awaited)."""
        result = self.call("Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in result:
            raise ValueError(result["exceptionDetails"].get("exception", {}).get("description") or result)
        return result["result"].get("value")


# The notebook panel showing NOTEBOOK, or null.
PANEL = f"""(() => {{ const app = window.jupyterapp; if (!app) return null;
  for (const w of app.shell.widgets('main')) if (w.context && w.context.path === {json.dumps(NOTEBOOK)}) return w;
  return null; }})()"""

OPENED = f"""(() => {{ const w = {PANEL}; if (!w || !w.context.isReady) return null;
  const k = w.sessionContext.session && w.sessionContext.session.kernel;
  return {{kernel: k ? k.name : null, status: k ? k.status : null, dialog: !!document.querySelector('.jp-Dialog'),
           dirty: w.context.model.dirty, cells: w.content.widgets.length}}; }})()"""

PROGRESS = f"""(() => {{ const w = {PANEL}; const code = w.content.widgets.filter(c => c.model.type === 'code');
  const errors = code.filter(c => c.model.outputs.toJSON().some(o => o.output_type === 'error')).length;
  const busy = w.node.querySelectorAll('.jp-InputPrompt').length &&
               [...w.node.querySelectorAll('.jp-InputPrompt')].some(p => p.textContent.includes('*'));
  return {{total: code.length, done: code.filter(c => c.model.executionCount !== null).length, errors, busy,
           status: w.sessionContext.session.kernel.status}}; }})()"""

# What the notebook shows: every output (type, mime types, text), widget errors, stderr strips, rendered formulas in
# outputs, and the width of the tables.
REPORT = f"""(() => {{ const w = {PANEL}; const outs = [];
  w.content.widgets.forEach((c, i) => {{ if (c.model.type !== 'code') return;
    c.model.outputs.toJSON().forEach(o => outs.push({{cell: i, type: o.output_type, name: o.name || null,
      mimes: o.data ? Object.keys(o.data) : [], ename: o.ename || null,
      text: o.text ? [].concat(o.text).join('') : (o.data && o.data['text/plain'] ? [].concat(o.data['text/plain']).join('') : '')}})); }});
  const stderr = [...w.node.querySelectorAll('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')]
    .map(n => n.textContent);
  const tables = [...w.node.querySelectorAll('.jp-OutputArea .jp-RenderedMarkdown table')]
    .map(t => ({{width: t.scrollWidth, height: t.scrollHeight, rows: t.rows.length, columns: t.rows[0] ? t.rows[0].cells.length : 0}}));
  return {{outs, stderr, tables, widgetErrors: (w.node.textContent.match(/Error displaying widget/g) || []).length,
           math: w.node.querySelectorAll('.jp-OutputArea mjx-container, .jp-OutputArea .MathJax, .jp-OutputArea .katex').length,
           dirty: w.context.model.dirty, visible: w.node.querySelectorAll('.jp-OutputArea-output').length}}; }})()"""


def check_report(report: dict, when: str) -> list[str]:
    """The problems a notebook's report shows."""
    problems = []
    for o in report["outs"]:
        if o["type"] == "error":
            problems.append(f"{when}: cell {o['cell']} shows an error ({o['ename']})")
        if any("widget" in m for m in o["mimes"]):
            problems.append(f"{when}: cell {o['cell']} holds a widget ({o['mimes']})")
    if report["widgetErrors"]:
        problems.append(f"{when}: {report['widgetErrors']} 'Error displaying widget'")
    if any(not text.strip() for text in report["stderr"]):
        problems.append(f"{when}: {sum(not t.strip() for t in report['stderr'])} empty stderr strip(s)")
    if report["math"]:
        problems.append(f"{when}: {report['math']} formula(s) rendered in outputs (an unescaped $?)")
    return problems


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clone", type=Path, default=DEFAULT_CLONE, help=f"the clone to use (default {DEFAULT_CLONE}; "
                        "reused when it is one)")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds for running the notebook (default 3600: "
                        "4-5 min on 2 idle cores, far longer on a busy machine)")
    parser.add_argument("--screenshot", type=Path, help="a PNG of the reopened notebook")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "chromium")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    clone = args.clone.resolve()
    fresh_clone(clone)
    step(f"clone at {clone}", started)
    subprocess.run(["make", "install"], cwd=clone, check=True, stdout=subprocess.DEVNULL)
    step("make install", started)
    before = subprocess.run(["git", "status", "--porcelain"], cwd=clone, capture_output=True, text=True).stdout
    if before:
        raise CheckFailed(f"the fresh clone is not clean after make install:\n{before}")

    port, token, debug_port = free_port(), secrets.token_hex(16), free_port()
    profile = Path(tempfile.mkdtemp(prefix="browser-check-chromium-"))
    lab_args = (f"--no-browser --ip=127.0.0.1 --port={port} --ServerApp.port_retries=0 "
                f"--IdentityProvider.token={token} --LabApp.expose_app_in_browser=True")
    log = open(profile / "lab.log", "w")
    server = subprocess.Popen(["make", "lab", f"LAB_ARGS={lab_args}"], cwd=clone, stdout=log, stderr=subprocess.STDOUT,
                              start_new_session=True)
    browser = None
    problems: list[str] = []
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for("JupyterLab", lambda: urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=5).status == 200,
                 300)
        step("make lab is serving", started)
        # The notebook's cells all in the DOM (no windowing), so that the DOM checks see every output.
        settings = f"{base}/lab/api/settings/@jupyterlab/notebook-extension:tracker?token={token}"
        urllib.request.urlopen(urllib.request.Request(settings, method="PUT", headers={"Content-Type": "application/json"},
                               data=json.dumps({"raw": '{"windowingMode": "none"}'}).encode()), timeout=30)
        browser = subprocess.Popen([args.chromium, "--headless=new", "--no-sandbox", "--disable-gpu",
                                    "--disable-dev-shm-usage", f"--remote-debugging-port={debug_port}",
                                    "--remote-allow-origins=*", f"--user-data-dir={profile / 'chromium'}",
                                    "--window-size=1440,900", "about:blank"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        pages = wait_for("Chromium", lambda: [t for t in json.load(urllib.request.urlopen(
            f"http://127.0.0.1:{debug_port}/json/list", timeout=5)) if t["type"] == "page"], 60)
        tools = DevTools(pages[0]["webSocketDebuggerUrl"])
        url = f"{base}/lab/tree/{NOTEBOOK}?reset&token={token}"
        tools.call("Page.navigate", url=url)
        opened = wait_for("notebook 01 to open on its kernel",
                          lambda: (lambda o: o if o and o["kernel"] and o["status"] == "idle" or o and o["dialog"] else None)(
                              tools.js(OPENED)), 300)
        step(f"notebook 01 open: {opened}", started)
        if opened["dialog"] or opened["kernel"] != KERNEL:
            raise CheckFailed(f"notebook 01 did not start on kernel {KERNEL} by itself: {opened}")
        # JupyterLab writes the kernel's language_info into a notebook it opens (dirty: autosave rewrites it): the
        # git filter leaves language_info out, so that is no change to git (checked at the end).

        run_started = time.perf_counter()
        tools.js("(() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); return true; })()")
        progress = wait_for("every cell to run", lambda: (lambda p: p if p["errors"] or (
            p["done"] == p["total"] and not p["busy"] and p["status"] == "idle") else None)(tools.js(PROGRESS)),
            args.timeout, every=2)
        step(f"ran all cells in {time.perf_counter() - run_started:.0f} s: {progress}", started)
        ran = tools.js(REPORT)
        problems += check_report(ran, "after running")
        tools.js(f"({PANEL}).context.save()")  # what File > Save does for this notebook
        wait_for("the save", lambda: not tools.js(REPORT)["dirty"], 60)
        saved = json.loads((clone / NOTEBOOK).read_text())
        saved_outputs = sum(len(c.get("outputs", [])) for c in saved["cells"])
        step(f"saved: {saved_outputs} outputs in the file", started)
        tools.js(f"({PANEL}).sessionContext.shutdown()")

        tools.call("Page.navigate", url=url)  # a new page: the notebook is read again from the file
        wait_for("notebook 01 to reopen", lambda: tools.js(f"(() => {{ const w = {PANEL}; return !!(w && w.context.isReady); }})()"), 300)
        time.sleep(5)  # let every output render
        reopened = tools.js(REPORT)
        problems += check_report(reopened, "after reopening")
        if len(reopened["outs"]) != len(ran["outs"]) or not reopened["visible"]:
            problems.append(f"reopened with {len(reopened['outs'])} outputs ({reopened['visible']} shown), "
                            f"ran with {len(ran['outs'])}")
        if args.screenshot:
            shot = tools.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
            import base64
            args.screenshot.write_bytes(base64.b64decode(shot["data"]))
        tools.js(f"({PANEL}).sessionContext.shutdown()")
        lines = [o["text"] for o in reopened["outs"] if "text/plain" in o["mimes"] and " steps, loss " in o["text"]]
        print(f"[browser-check] reopened: {len(reopened['outs'])} outputs, {len(lines)} run lines, e.g. "
              f"{lines[0] if lines else None!r}; stderr outputs: {len(reopened['stderr'])}; tables (width x height px, "
              f"columns): {[(t['width'], t['height'], t['columns']) for t in reopened['tables']]}", flush=True)
    finally:
        if browser is not None:
            os.killpg(browser.pid, signal.SIGTERM)
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(60)
        log.close()
    status = subprocess.run(["git", "status", "--porcelain"], cwd=clone, capture_output=True, text=True).stdout
    if status:
        problems.append(f"git status in the clone is not clean:\n{status}")
    interactive = clone / "lab" / "results" / "01_pretrain_and_transfer" / "smoke" / "table.md"
    if not interactive.exists():
        problems.append(f"the interactive run wrote no {interactive.relative_to(clone)}")
    seconds = time.perf_counter() - started
    for problem in problems:
        print(f"[browser-check] FAILED: {problem}", flush=True)
    print(f"[browser-check] {'passed' if not problems else 'failed'} in {seconds:.0f} s "
          f"(JupyterLab log: {profile / 'lab.log'})", flush=True)
    return 1 if problems else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except CheckFailed as err:
        print(f"[browser-check] FAILED: {err}", file=sys.stderr, flush=True)
        sys.exit(1)
