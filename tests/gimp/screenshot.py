"""The picture of the Refine skin dialog in docs/gimp.md, taken in real GIMP 3 under Xvfb.

    .venv/bin/python -m tests.gimp.screenshot docs/img/gimp-dialog.png

Starts a `dermis serve` (lite) and GIMP's GUI in the test chroot (tests/_gimp_helpers.py), opens the
dialog on a portrait with a selection, grabs the dialog from the X server (the chroot shares this
host's network namespace, so Xvfb's abstract socket is reachable from here) and presses Escape.
Not a test: run it when the dialog changes.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from PIL import ImageGrab

from tests import _gimp_helpers as g
from tests.test_gimp_editor import case, layer_spec, portrait_crop


def main(out: Path) -> int:
    root = g.ensure_chroot()
    with g.mounted(root):
        state = Path(f"/tmp/dermis-shot-{time.time_ns()}")
        daemon = g.serve_on_tcp(state)
        work = g.Workdir(root)
        try:
            g.install_plugin(work, g.gimp_python_version(root))
            shown, go = work.inside / "out" / "shown", work.inside / "out" / "go"
            spec = {"cases": [case("shot", [layer_spec(work, "shot", "Background", portrait_crop(240, 320))],
                                   size=(320, 240), run_mode="interactive", display=True,
                                   args={"preset": "lite", "seed": 7, "server": daemon.address},
                                   selection={"kind": "ellipse", "x": 90, "y": 40, "w": 130, "h": 150,
                                              "feather": 10})]}
            proc = g.run_gimp(root, work, spec, env={"DERMIS_TOKEN": daemon.token},
                              keys=[f"shown:{shown}", f"file:{go}", "dialog:Escape"])
            host_shown = work.host / "out" / "shown"
            deadline = time.monotonic() + 120
            while not host_shown.exists() and time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.2)
            if not host_shown.exists():
                print("the dialog did not show up", file=sys.stderr)
                proc.kill()
                return 1
            geo = dict(line.split("=", 1) for line in host_shown.read_text().split())
            x, y, w, h = (int(geo[k]) for k in ("X", "Y", "WIDTH", "HEIGHT"))
            # xvfb-run's display and cookie, the newest (this session's) in the chroot's /tmp
            newest = lambda paths: max(paths, key=lambda p: p.stat().st_mtime)  # noqa: E731
            display = newest([p for p in (root / "tmp/.X11-unix").iterdir() if p.name.startswith("X")])
            os.environ["XAUTHORITY"] = str(newest(list((root / "tmp").glob("xvfb-run.*/Xauthority"))))
            shot = ImageGrab.grab(bbox=(x, y, x + w, y + h), xdisplay=f":{display.name[1:]}")
            out.parent.mkdir(parents=True, exist_ok=True)
            shot.save(out, optimize=True)
            (work.host / "out" / "go").touch()
            g.finish_gimp(proc, work)
            print(f"wrote {out} ({w}x{h})")
            return 0
        finally:
            work.remove()
            daemon.stop()


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/img/gimp-dialog.png")))
