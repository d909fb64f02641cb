"""kritarunner driver: 'Download missing models…' of the Dermis docker's controller inside real Krita.

Called as ``kritarunner -s kr_models -f main SPEC.json`` with the installed plugin on PYTHONPATH. It
uses the plugin's own ``Controller`` (the object the docker's button and Stop button call) against the
real daemon, which downloads from the Hub stand-in: the plan the docker would show, a download stopped
half-way, then the whole download. Qt's event loop is pumped here (kritarunner runs none), with a
20 ms heartbeat timer measuring how long the UI thread was ever kept busy. The confirmation message
box itself is widget code the GUI test of the refine path covers in kind; here the controller is told
the user said yes. Results go to a JSON report, then ``os._exit`` (kritarunner exits 0 regardless).
"""

from __future__ import annotations

import json
import os
import time
import traceback
from pathlib import Path


def main(args: list) -> None:
    spec = json.loads(Path(args[0]).read_text())
    report: dict = {}
    code = 0
    try:
        run(spec, report)
    except Exception:
        report["crash"] = traceback.format_exc()
        code = 2
    out = Path(spec["out"])
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(report, indent=1, default=str))
    os.replace(tmp, out)
    os._exit(code)


class Pump:
    """Runs Qt's event loop by hand and measures the longest gap between heartbeats."""

    def __init__(self) -> None:
        from PyQt5.QtCore import QTimer
        from PyQt5.QtWidgets import QApplication

        self.app = QApplication.instance()
        self.max_gap = 0.0
        self._last = None
        self.heart = QTimer()
        self.heart.setInterval(20)
        self.heart.timeout.connect(self._beat)
        self.heart.start()

    def _beat(self) -> None:
        now = time.monotonic()
        if self._last is not None:
            self.max_gap = max(self.max_gap, now - self._last)
        self._last = now

    def until(self, cond, timeout: float, what: str, each=None) -> None:
        end = time.monotonic() + timeout
        while not cond():
            if time.monotonic() > end:
                raise TimeoutError(f"waited {timeout} s for {what}")
            self.app.processEvents()
            if each is not None:
                each()
            time.sleep(0.005)


def run(spec: dict, report: dict) -> None:
    from dermis_krita import controller, options

    pump = Pump()
    ctl = controller.Controller()
    ctl.settings.preset = spec["preset"]
    plans: list = []
    ctl.download_plan_ready.connect(lambda: plans.append(ctl.download_plan))
    ctl.refresh()
    pump.until(lambda: ctl.info is not None or not ctl.connecting, 60, "the server info")
    report["server_text"] = ctl.server_text
    report["missing_before"] = options.missing_weights(ctl.info)

    # 1. the button: what would be fetched (the docker shows this text and asks)
    t0 = time.monotonic()
    ctl.plan_download()
    report["plan_call_s"] = time.monotonic() - t0
    pump.until(lambda: plans, 60, "the download plan")
    report["plan"] = plans[0].describe()
    report["plan_downloads"] = [f.role for f in plans[0].downloads]

    # 2. yes, then Stop half-way: the daemon keeps the partial file
    texts: list = []
    t0 = time.monotonic()
    ctl.start_download(accept_licences=True)
    report["start_call_s"] = time.monotonic() - t0
    pump.until(lambda: ctl.download.fraction > 0, 60, "download progress")
    ctl.cancel_download()
    pump.until(lambda: not ctl.downloading, 60, "the stop")
    report["stopped"] = {"phase": ctl.download.phase.value, "message": ctl.last_message, "error": ctl.last_error}

    # 3. again, to the end: the docker's texts along the way, then the refreshed server info
    open(spec["unthrottle"], "w").close()  # the test speeds the stand-in up now
    ctl.start_download(accept_licences=True)
    pump.until(lambda: not ctl.downloading, 120, "the download",
               each=lambda: texts.append(ctl.download.status_text) if not texts or texts[-1] != ctl.download.status_text else None)
    pump.until(lambda: not ctl.connecting, 60, "the refreshed server info")
    report["done"] = {"phase": ctl.download.phase.value, "message": ctl.last_message, "error": ctl.last_error,
                      "texts": texts, "fraction": ctl.download.fraction}
    report["missing_after"] = options.missing_weights(ctl.info)
    report["max_gap_s"] = pump.max_gap
