"""The interactive dialog: preset, scale, denoise, overrides, seed, server.

Built on GimpUi.ProcedureDialog over the procedure's own config, so every field is a procedure
argument too and GIMP remembers the last values. The preset is a combo filled from the daemon
(``Client.info()``), with a line saying whether the daemon answers; a preset can still be typed
when the daemon is down.
"""

from __future__ import annotations

import gi

gi.require_version("Gimp", "3.0")
gi.require_version("GimpUi", "3.0")
gi.require_version("Gtk", "3.0")
from gi.repository import GimpUi, GObject, Gtk  # noqa: E402

from ._client import client, editors  # noqa: E402

FIELDS = ["output", "strength", "scale", "feather", "context", "denoise-1", "denoise-2", "variations",
          "seed", "islands", "faces", "overrides", "server"]
INFO_TIMEOUT = 2.0  # s: the dialog waits this long at most for the daemon's preset list


def daemon_status(server: str, token: str) -> tuple[list, str, str, list[str]]:
    """(the daemon's PresetInfos, the default preset, one line about the daemon, the weights keys it
    lacks).

    Never raises: a daemon that does not answer is a line of text, the dialog still opens.
    """
    try:
        with client.Client(server or None, token or None, timeout=INFO_TIMEOUT) as c:
            info = c.info()
    except client.ClientError as e:
        return [], "", f"Daemon not reachable: {e}", []
    presets = list(info.presets)
    line = (f"Dermis {info.version} on {info.device}"
            + (f"; {info.queue_length} job(s) queued" if info.queue_length else ""))
    missing = [w.key for w in info.weights if w.status == "missing"]
    return presets, info.default_preset, line, missing


def preset_row(config, presets: list, default_name: str) -> Gtk.Widget:
    """A combo with an entry, bound to the ``preset`` argument ('' = the daemon's default)."""
    row = Gtk.Box(orientation=Gtk.Orientation.HORIZONTAL, spacing=6)
    row.pack_start(Gtk.Label(label="Preset"), False, False, 0)
    combo = Gtk.ComboBoxText.new_with_entry()
    for p in presets:
        combo.append(p.name, p.name)
    combo.set_tooltip_text("\n".join(f"{p.name}: {p.description}" for p in presets)
                           or "Type a preset name; empty uses the daemon's default.")
    entry = combo.get_child()
    entry.set_placeholder_text(f"default ({default_name})" if default_name else "daemon default")
    config.bind_property("preset", entry, "text",
                         GObject.BindingFlags.BIDIRECTIONAL | GObject.BindingFlags.SYNC_CREATE)
    row.pack_start(combo, True, True, 0)
    return row


def ask(procedure, config) -> bool:
    """Show the dialog; True when the user pressed OK (the config then holds their choices)."""
    GimpUi.init(procedure.get_name())
    presets, default_name, status, missing = daemon_status(config.get_property("server") or "",
                                                           config.get_property("token") or "")
    dlg = GimpUi.ProcedureDialog.new(procedure, config, "Dermis: refine skin")
    dlg.fill(FIELDS)
    top = Gtk.Box(orientation=Gtk.Orientation.VERTICAL, spacing=6)
    label = Gtk.Label(label=status, xalign=0.0)
    label.set_line_wrap(True)
    top.pack_start(label, False, False, 0)
    top.pack_start(preset_row(config, presets, default_name), False, False, 0)
    top.pack_start(PresetDefaults(config, presets, default_name).label, False, False, 0)
    if missing:
        top.pack_start(download_row(config, missing), False, False, 0)
    area = dlg.get_content_area()
    area.pack_start(top, False, False, 6)
    area.reorder_child(top, 0)
    top.show_all()
    try:
        ok = bool(dlg.run())
    finally:
        dlg.destroy()
    if ok:
        PresetDefaults.keep_following(config, presets, default_name)
    return ok


class PresetDefaults:
    """Feather and context show the chosen preset's values (from the daemon's preset info): filled in
    when the dialog opens on 'the preset's' (-1) and whenever another preset is chosen; a line says
    what the preset uses and which stages the Denoise fields set."""

    def __init__(self, config, presets: list, default_name: str) -> None:
        self.config, self.presets, self.default_name = config, presets, default_name
        self.label = Gtk.Label(xalign=0.0)
        self.label.set_line_wrap(True)
        self.fill(only_unset=True)
        config.connect("notify::preset", lambda *_: self.fill(only_unset=False))

    @staticmethod
    def find(presets: list, name: str, default_name: str):
        return next((p for p in presets if p.name == (name.strip() or default_name)), None)

    def fill(self, only_unset: bool) -> None:
        preset = self.find(self.presets, self.config.get_property("preset") or "", self.default_name)
        if preset is None:
            self.label.set_text("Feather and context -1 use the preset's values." if self.presets else "")
            return
        values = editors.preset_defaults(preset)
        for key in ("feather", "context"):
            if not only_unset or self.config.get_property(key) < 0:
                self.config.set_property(key, values[key])
        stages = editors.denoise_stages(preset)
        self.label.set_text(
            f"Preset {preset.name}: feather {values['feather']:g} px, context {values['context']} px; "
            + ("denoise " + ", ".join(f"{i + 1} = {s}" for i, s in enumerate(stages))
               if stages else "no stage takes a denoise (the Denoise fields are not used)")
            + (", previews in the progress bar" if preset.previews else "") + ".")

    @staticmethod
    def keep_following(config, presets: list, default_name: str) -> None:
        """After OK: a feather or context equal to the preset's is stored as -1 ('the preset's'),
        so the remembered value follows the preset next time instead of pinning this one's."""
        preset = PresetDefaults.find(presets, config.get_property("preset") or "", default_name)
        if preset is None:
            return
        values = editors.preset_defaults(preset)
        for key in ("feather", "context"):
            if config.get_property(key) == values[key]:
                config.set_property(key, -1 if key == "context" else -1.0)



def download_row(config, missing: list[str]) -> Gtk.Widget:
    """'Missing weights: …' and a button that runs Download missing models… for the chosen preset."""
    row = Gtk.Box(orientation=Gtk.Orientation.HORIZONTAL, spacing=6)
    label = Gtk.Label(label="Missing weights: " + ", ".join(missing), xalign=0.0)
    label.set_line_wrap(True)
    button = Gtk.Button(label="Download missing models…")
    button.set_tooltip_text("The daemon downloads what the chosen preset lacks (you see the list, sizes "
                            "and licences first); GIMP's progress bar follows it.")

    def clicked(_button) -> None:
        from gi.repository import Gimp

        from .models import DOWNLOAD_PROC

        proc = Gimp.get_pdb().lookup_procedure(DOWNLOAD_PROC)
        cfg = proc.create_config()
        cfg.set_property("run-mode", Gimp.RunMode.INTERACTIVE)
        for key in ("preset", "server", "token"):
            cfg.set_property(key, config.get_property(key) or "")
        proc.run(cfg)

    button.connect("clicked", clicked)
    row.pack_start(label, True, True, 0)
    row.pack_start(button, False, False, 0)
    return row


def confirm_download(procedure, plan) -> bool:
    """Show what would be downloaded (files, sizes, free space, licences); True on OK."""
    GimpUi.init(procedure.get_name())
    dlg = Gtk.MessageDialog(message_type=Gtk.MessageType.QUESTION, buttons=Gtk.ButtonsType.OK_CANCEL,
                            text="Dermis: download models")
    dlg.format_secondary_text(plan.describe() + ("\n\nDownload now?" if plan.downloads else ""))
    try:
        return dlg.run() == Gtk.ResponseType.OK and bool(plan.downloads)
    finally:
        dlg.destroy()
