"""Issue 17 in GIMP 3.0.4's GUI (Xvfb, in the chroot) against a real daemon (`dermis serve`, lite):
what a user does in the image window while the plug-in waits for the daemon, and Ctrl+Z after a run.

- One Ctrl+Z takes away a whole layer group (two selection islands) or a layer with its layer mask,
  and leaves the image as it was. Negative control: the same kind of group inserted without an undo
  group needs more than one Ctrl+Z.
- The source layer deleted in the GUI (Layer → Delete Layer, by its shortcut) while the job waits in
  the daemon: the result goes on top, with a message.
- An image's window closed (Ctrl+W) while the job waits, another image being open: the result
  arrives in a new image, with a message. (Closing the only open image is not caught: GIMP 3.0 keeps
  an empty window and the closed image alive for the plug-in; see docs/gimp.md.)

The user acts while the plug-in's job waits in the daemon's queue behind another client's long job
(`lite-blocker`, submitted by the test); the test cancels that job once the key has been pressed, so
the plug-in's job starts only after the layer is gone or the image closed: no race with its duration.
tests/gimp/press_keys.sh plays the keys; tests/gimp/driver.py builds the images, calls the plug-in
and dumps what it finds.
"""

from __future__ import annotations

import contextlib
import os
import signal

import numpy as np
import pytest

from . import _gimp_helpers as g
from ._daemon_helpers import request
from .conftest import wait_for
from .test_gimp_editor import case, layer_spec, load_raw, portrait_crop, selection_of
from .test_gimp_workflow import ELLIPSE, SRC, TWO_ISLANDS, H, W, check_layer

pytestmark = [pytest.mark.editor, pytest.mark.slow]

# another client's job that keeps the daemon busy until the test cancels it (ends by itself after
# minutes at worst): the skin_texture stage of lite, many times over
BLOCKER_PRESET = "\n".join(
    ['name = "lite-blocker"', 'label = "lite-blocker"', 'description = "test: keeps the daemon busy"',
     "scale = 1.0", "context = 32", "feather = 8"]
    + [f'[[stage]]\nid = "texture{i}"\nkind = "skin_texture"\nstrength = 0.01' for i in range(3000)]
)
DELETE_LAYER_KEY = ("<Primary><Shift>F9", "ctrl+shift+F9")  # GIMP's notation, xdotool's
WAIT = 120  # s for each step of the dance with GIMP


@pytest.fixture(scope="module")
def gui(tmp_path_factory):
    """Every case in one GIMP GUI session: (workdir, results by case name)."""
    root = g.ensure_chroot()
    with g.mounted(root):
        daemon = g.serve_on_tcp(tmp_path_factory.mktemp("daemon-state"),
                                presets={"lite-blocker": BLOCKER_PRESET})
        work = g.Workdir(root)
        try:
            g.install_plugin(work, g.gimp_python_version(root))
            # Layer → Delete Layer has no default shortcut; a user would click the menu
            g.set_shortcuts(work, {"layers-delete": DELETE_LAYER_KEY[0]})
            yield work, _run_session(root, work, daemon)
        finally:
            work.remove()
            daemon.stop()


def _run_session(root, work, daemon) -> dict:
    lite = {"preset": "lite", "seed": 7, "scale": 1.0, "server": daemon.address}

    def one(name, title, selection=ELLIPSE, **extra):
        return case(name, [layer_spec(work, name, "Background", SRC)], size=(W, H), args=lite,
                    selection=selection, display=True, title=title, **extra)

    out = f"{work.inside}/out"
    cases = [
        case("deleted", [layer_spec(work, "deleted", name, SRC) for name in ("Background", "Doomed")],
             size=(W, H), source=1, args=lite, selection=ELLIPSE, display=True, title="dermis-deleted"),
        one("closed", "dermis-closed", clean=True, other_image=True),
        one("group_undo", "dermis-group-undo", undo="undo-group", selection=TWO_ISLANDS),
        one("layer_undo", "dermis-layer-undo", undo="undo-layer"),
        one("no_undo_group", "dermis-no-undo-group", undo="undo-control", insert_without_undo_group=True,
            undo_wait=5),
    ]
    keys = [f"file:{out}/delete-now", f"window:dermis-deleted:{DELETE_LAYER_KEY[1]}", f"done:{out}/deleted",
            f"file:{out}/close-now", "window:dermis-closed:ctrl+w", f"done:{out}/closed"]
    for marker, title in (("undo-group", "dermis-group-undo"), ("undo-layer", "dermis-layer-undo"),
                          ("undo-control", "dermis-no-undo-group")):
        keys += [f"file:{out}/{marker}", f"window:{title}:ctrl+z"]
    blocker = portrait_crop(300, 400, 0, 0)
    with daemon.client(admin=True) as c:
        blocked = c.submit(request(blocker, preset="lite-blocker", priority="editor", output="layer"))
        wait_for(lambda: _state(c, blocked) == "running", WAIT, "the blocking job to run")
        proc = g.run_gimp(root, work, {"cases": cases, "console_messages": True},
                          env={"DERMIS_TOKEN": daemon.token}, keys=keys)
        try:
            seen: set[str] = set()
            for trigger, done in (("delete-now", "deleted"), ("close-now", "closed")):
                job = wait_for(lambda: _queued_gimp_job(c, seen), WAIT, f"the GIMP job before {trigger}",
                               poll=0.2)
                seen.add(job)
                (work.host / "out" / trigger).touch()
                wait_for(lambda done=done: (work.host / "out" / done).exists(), WAIT, f"press_keys: {done}",
                         poll=0.2)
                assert _state(c, job) == "queued"  # the plug-in is still waiting: the user acted mid-run
                # the next blocker queues behind the plug-in's job, which starts now
                following = None if trigger == "close-now" else \
                    c.submit(request(blocker, preset="lite-blocker", priority="editor", output="layer"))
                c.cancel(blocked)
                blocked = following
            return {r["name"]: r for r in g.finish_gimp(proc, work)}
        except BaseException:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
        finally:
            if blocked is not None:
                with contextlib.suppress(Exception):  # it may have ended meanwhile
                    c.cancel(blocked)


def _state(c, job_id: str) -> str | None:
    return next((j.state for j in c.list_jobs(include_finished=True) if j.job_id == job_id), None)


def _queued_gimp_job(c, seen: set[str]) -> str | None:
    return next((j.job_id for j in c.list_jobs() if j.client_name == "gimp" and j.state == "queued"
                 and j.job_id not in seen), None)


def test_a_source_deleted_during_the_run_loses_nothing(gui):
    """Deleted in the GUI while the job waited: the result goes on top, where the layer was, equal to
    the library's, and a message says so (as in Krita)."""
    work, results = gui
    rec = results["deleted"]
    assert rec["status"] == "success", rec.get("error")
    assert [e["name"] for e in rec["layers"]] == ["Dermis (lite, 7)", "Background"]
    check_layer(work, rec["layers"][0], selection_of(work, rec, (W, H)))
    assert "The layer 'Doomed' was deleted meanwhile: the result went on top." in rec["_log"]


def test_a_closed_image_gets_the_result_in_a_new_one(gui):
    """Closed in the GUI while the job waited: no crash, the result (equal to the library's, with its
    layer mask) lands in a new, unsaved image over the part of the source that was read, and a
    message names both images."""
    work, results = gui
    rec = results["closed"]
    assert rec["image_closed"] and rec["status"] == "success", rec.get("error")
    assert "new_image" in rec, ({k: v for k, v in rec.items() if k != "_log"}, rec["_log"][-3000:])
    new = rec["new_image"]
    assert new["size"] == [W, H] and new["dirty"], new
    names = [e["name"] for e in new["layers"]]
    assert names == ["Dermis (lite, 7)", "Background (what Dermis read)"], names
    check_layer(work, new["layers"][0], selection_of(work, rec, (W, H)))
    under = load_raw(work, new["layers"][1]["pixels"], (H, W, 4), np.uint8)
    np.testing.assert_array_equal(under[..., :3], SRC)  # the padding reaches past this small layer
    assert "The image 'dermis-closed.xcf' was closed while Dermis worked. The result is in a new " \
           "image" in rec["_log"], rec["_log"][-2000:]
    assert "Traceback" not in rec["_log"]


def _after_one_undo(work, rec) -> np.ndarray:
    assert rec["status"] == "success", rec.get("error")
    assert f"press_keys: window:{rec['title']}:ctrl+z" in rec["_log"]
    return load_raw(work, rec["composite_after_undo"], (H, W, 4), np.uint8)


@pytest.mark.parametrize("name", ["group_undo", "layer_undo"])
def test_one_ctrl_z_takes_the_whole_result_away(gui, name):
    """A group (two islands, a layer and mask each) or a layer with its mask: after one Ctrl+Z only
    the source is left, without a mask, and GIMP's composite is the source exactly."""
    work, results = gui
    rec = results[name]
    dermis = [e for e in rec["layers"] if e["name"].startswith("Dermis")]
    assert len(dermis) == 1 and dermis[0]["group"] == (name == "group_undo"), rec["layers"]
    composite = _after_one_undo(work, rec)
    assert rec["after_undo"] == ["Background"] and rec["masks_after_undo"] == [False], rec["after_undo"]
    np.testing.assert_array_equal(composite[..., :3], SRC)


def test_without_an_undo_group_one_ctrl_z_is_not_enough(gui):
    """Negative control: the same kind of group inserted step by step without an undo group; one
    Ctrl+Z leaves the group (and the image differs from before in its layers)."""
    work, results = gui
    rec = results["no_undo_group"]
    _after_one_undo(work, rec)
    assert rec["after_undo"] == ["Dermis (no undo group)", "Background"], rec["after_undo"]
    assert rec["children_after_undo"] == 2
