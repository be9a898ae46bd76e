"""What a reader sees of a study in MLflow's own UI: a real `mlflow server` on a small store, its
runs table opened in headless Chromium (Debian's `chromium`), driven over the DevTools protocol
(a minimal websocket client below: no browser-automation package needed). Slow: make test-slow.

Chromium is installed with apt-get when missing and running as root (as CI does); otherwise the
test is skipped, saying why.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import services

from limo_exp.tracking import run_log
from limo_exp.tracking.names import VIEW
from limo_exp.tracking.sweep_log import log_sweep_summary
from limo_exp.tracking.tracker import Tracker


def _chromium() -> str:
    """Debian's chromium: found, or installed when root (CI), or the test is skipped."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip("no chromium, and not root to apt-get install it (apt-get install chromium)")
    env = os.environ | {"DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update"], env=env, capture_output=True, timeout=600)
    got = subprocess.run(
        ["apt-get", "install", "-y", "--no-install-recommends", "chromium"],
        env=env,
        capture_output=True,
        timeout=900,
    )
    found = shutil.which("chromium")
    if not found:
        pytest.skip(f"apt-get install chromium failed: {got.stderr.decode()[-300:]}")
    return found


class DevTools:
    """Chrome DevTools protocol over one page's websocket (RFC 6455 text frames, client-masked)."""

    def __init__(self, ws_url: str):
        u = urllib.parse.urlparse(ws_url)
        self.sock = socket.create_connection((u.hostname, u.port), timeout=60)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                f"GET {u.path} HTTP/1.1\r\nHost: {u.hostname}:{u.port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            head += self.sock.recv(4096)
        assert b" 101 " in head.split(b"\r\n")[0], head[:200]
        self.buf = head.split(b"\r\n\r\n", 1)[1]
        self.id = 0

    def _exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise EOFError("devtools closed the connection")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def _message(self) -> dict:
        parts = []
        while True:
            b0, b1 = self._exact(2)
            n = b1 & 0x7F
            if n == 126:
                n = int.from_bytes(self._exact(2), "big")
            elif n == 127:
                n = int.from_bytes(self._exact(8), "big")
            parts.append(self._exact(n))  # a server's frames are not masked
            if b0 & 0x80:  # FIN
                return json.loads(b"".join(parts))

    def call(self, method: str, **params) -> dict:
        self.id += 1
        data = json.dumps({"id": self.id, "method": method, "params": params}).encode()
        n, mask = len(data), os.urandom(4)
        size = bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + n.to_bytes(2, "big")
        if n >= 1 << 16:
            size = bytes([0x80 | 127]) + n.to_bytes(8, "big")
        self.sock.sendall(b"\x81" + size + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))
        while True:
            msg = self._message()
            if msg.get("id") == self.id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def js(self, expression: str):
        out = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        return out.get("result", {}).get("value")

    def wait_for(self, expression: str, seconds: float = 60):
        deadline = time.time() + seconds
        while time.time() < deadline:
            value = self.js(expression)
            if value:
                return value
            time.sleep(0.5)
        raise AssertionError(f"the page never satisfied {expression[:200]}")


def _store(root: Path) -> tuple[str, str, list[str]]:
    """A study as limo-exp writes one: a sweep parent and four children named by run_log, their
    params in run_log's order and their evaluation through run_log (the headline, the view)."""
    uri = f"sqlite:///{root}/mlflow.db"
    t = Tracker(uri, "quality_tiers", str(root / "art"))
    parent = t.start(
        "quality_tiers · smollm2_135m · quality=short,answer_only; data.n_samples=8,16",
        {"limo.kind": "sweep"},
    )
    names = []
    for tier in ("answer_only", "short"):
        for n in (8, 16):
            axes = {"quality": tier, "data.n_samples": str(n)}
            name = run_log.run_name(tier, "random", n, 0, axes)
            names.append(name)
            with t.run(
                name, {"limo.run_key": f"{tier}{n}", "limo.kind": "run", "limo.model": "smollm2_135m"}, parent
            ):
                params = {f"report.x{i}": "1" for i in range(40)} | {"model.name": "smollm2_135m"}
                params |= {"quality.name": tier, "quality.tier": tier, "data.n_samples": str(n), "seed": "0"}
                t.log_params(run_log.run_params(params, tuple(axes)))
                acc = 0.25 + 0.0625 * n / 8 + 0.125 * (tier == "short")  # exact in binary: shown whole
                metrics = {"arithmetic/accuracy": acc, "arithmetic/accuracy_stderr": 0.05}
                metrics |= {f"eval/limo_arithmetic/x{i}": float(i) for i in range(30)}
                run_log.log_evaluation(t, metrics, {"tasks": "limo_arithmetic"}, [])
    log_sweep_summary(t, parent)  # as the sweep's callback does at its end
    t.run_id = parent
    t.end()
    return uri, t.experiment_id, names


@pytest.mark.slow  # a server and a browser, ~1 min: make test-slow (.ci/run runs it)
def test_the_runs_table_shows_readable_names_and_the_headline(tmp_path):
    browser = _chromium()
    uri, experiment_id, names = _store(tmp_path)
    debug_port = services.free_port()
    with services.mlflow_server(uri, tmp_path / "art") as port:
        chrome = None
        try:
            chrome = subprocess.Popen(
                [browser, "--headless", "--no-sandbox", "--disable-gpu", "--window-size=1600,1000",
                 f"--remote-debugging-port={debug_port}", f"--user-data-dir={tmp_path / 'chrome'}", "about:blank"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            services.wait_for_port(debug_port, chrome, "chromium")
            pages = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{debug_port}/json/list").read())
            page = DevTools(next(p for p in pages if p["type"] == "page")["webSocketDebuggerUrl"])
            # the view limo-exp keeps on the experiment: headline accuracy and the axes as columns
            url = f"http://127.0.0.1:{port}/#/experiments/{experiment_id}/runs?viewStateShareKey={VIEW}"
            page.call("Page.navigate", url=url)
            page.wait_for("document.body.innerText.includes('quality_tiers · smollm2_135m')")
            assert page.js("document.body.innerText.includes('Training runs')")  # not the GenAI overview
            page.js(  # expand the sweep's parent: its children are the rows to read
                "document.querySelectorAll('button[data-component-id*=\"runnamecellrenderer\"]').forEach(b => b.click())"
            )
            page.wait_for(f"document.body.innerText.includes({json.dumps(names[0])})")
            time.sleep(1.0)  # let the grid settle before measuring and drawing it
            shot = page.call("Page.captureScreenshot", format="png")  # first: a failure has its picture too
            png = tmp_path / "runs_table.png"
            png.write_bytes(base64.b64decode(shot["data"]))
            print(f"screenshot: {png}")  # what a reader sees, kept under the test's tmp dir
            assert png.stat().st_size > 10_000
            headers = page.js(
                "[...document.querySelectorAll('.ag-header-cell')].map(h => h.getAttribute('col-id'))"
            )
            for column in (
                "metrics.`arithmetic/accuracy`",
                "params.`quality.name`",
                "params.`data.n_samples`",
            ):
                assert column in headers, headers  # the headline and the axes are columns of the table
            rows = page.js(  # the grid splits a row into its pinned and scrolled parts: joined by row index
                """(() => { const rows = {};
                     document.querySelectorAll('.ag-row').forEach(r => {
                       const row = rows[r.getAttribute('row-index')] ||= {};
                       r.querySelectorAll('[col-id]').forEach(c =>  // a name cell: the link's text, not its color label
                         row[c.getAttribute('col-id')] = (c.querySelector('a span') || c).innerText.trim());
                     });
                     return Object.values(rows); })()"""
            )
            children = {
                r["attributes.`Run Name`"]: r for r in rows if r.get("attributes.`Run Name`") in names
            }
            (parent,) = [r for r in rows if r.get("attributes.`Run Name`", "").startswith("quality_tiers · ")]
            assert float(parent["metrics.`arithmetic/accuracy`"]) == 0.5  # the sweep's best child, in its row
            assert sorted(children) == sorted(names)  # every child shown, under a name of its own
            for name, row in children.items():
                n, tier = name.split(" · ")[:2]
                assert row["params.`quality.name`"] == tier and f"N={row['params.`data.n_samples`']}" == n, (
                    row
                )
                expected = 0.25 + 0.0625 * int(n[2:]) / 8 + 0.125 * (tier == "short")
                assert float(row["metrics.`arithmetic/accuracy`"]) == expected, row  # its headline, whole
            # what the name column (190 px in MLflow 3.17; a shared view cannot widen it) shows of each
            # child: the longest prefix of its name inside the cell; those prefixes are distinct, each
            # reads its N whole and at least the start of its tier (a cut tail is in the columns above)
            visible = dict(
                page.js(
                    """[...document.querySelectorAll('[col-id="attributes.`Run Name`"] a span')].map(s => {
                         const text = s.firstChild, edge = s.getBoundingClientRect().right + 1;
                         const r = document.createRange();
                         let shown = 0;
                         for (let i = 1; i <= text.length; i++) {
                           r.setStart(text, 0); r.setEnd(text, i);
                           if (r.getBoundingClientRect().right > edge) break;
                           shown = i;
                         }
                         return [s.innerText, s.innerText.slice(0, shown)];
                       })"""
                )
            )
            shown = {name: visible.get(name, "") for name in names}
            assert len(set(shown.values())) == len(names), shown  # told apart in the name column alone
            for name, prefix in shown.items():
                n, tier = name.split(" · ")[:2]
                assert prefix.startswith(f"{n} · {tier[:3]}"), shown
        finally:
            if chrome is not None:
                chrome.terminate()
                chrome.wait(timeout=30)
