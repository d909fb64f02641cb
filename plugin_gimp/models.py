"""The GIMP 3 procedure "Download missing models…": the daemon fetches what a preset lacks.

Filters → Enhance → Dermis → Download missing models… (and the button in the Refine skin dialog, which
runs it through the PDB). Interactive runs first show what would be downloaded (files, sizes, free
space, the non-commercial licences) and start only on OK; scripts pass ``accept-licences``. The
download runs in the daemon; this process only follows it, with GIMP's progress bar. GIMP's cancel
kills the plug-in and the cancel guard then stops the download (its partial file is resumed next
time), as for a refine.
"""

from __future__ import annotations

import traceback

import gi

gi.require_version("Gimp", "3.0")
from gi.repository import Gimp, GLib, GObject  # noqa: E402

DOWNLOAD_PROC = "plug-in-dermis-download-models"
RW = GObject.ParamFlags.READWRITE


def create(plugin: Gimp.PlugIn, name: str, menu_path: str) -> Gimp.Procedure:
    p = Gimp.ImageProcedure.new(plugin, name, Gimp.PDBProcType.PLUGIN, run, None)
    p.set_image_types("*")
    p.set_sensitivity_mask(Gimp.ProcedureSensitivityMask.ALWAYS)
    p.set_menu_label("Download missing models…")
    p.add_menu_path(menu_path)
    p.set_documentation(
        "Download the model files a Dermis preset lacks",
        "Asks the Dermis daemon to download, into its models folder, the files the preset needs and "
        "does not find (shown first, with sizes and licences). Needs `dermis serve` running.",
        name,
    )
    p.set_attribution("Dermis", "Dermis contributors", "2025")
    p.add_string_argument("preset", "_Preset", "Preset whose models to download ('' = the daemon's default)",
                          "", RW)
    p.add_boolean_argument("accept-licences", "_Accept licences",
                           "Accept the licences of the non-commercial models (scripts; the dialog asks)",
                           False, RW)
    p.add_string_argument("server", "Ser_ver", "Daemon address ('' = $DERMIS_ADDRESS or the running "
                          "daemon's)", "", RW)
    p.add_string_argument("token", "_Token", "Daemon token ('' = $DERMIS_TOKEN or the daemon's token file)",
                          "", RW)
    return p


def run(procedure, run_mode, image, drawables, config, data):
    from .procedure import error_return

    try:
        return _run(procedure, run_mode, config)
    except Exception as e:  # a message, not GIMP's traceback dialog
        traceback.print_exc()
        return error_return(procedure, f"Dermis failed unexpectedly: {e} (the traceback is in GIMP's terminal "
                                 "output; please report it).")
    finally:
        config.set_property("token", "")


def _run(procedure, run_mode, config):
    from . import job
    from ._client import client, editors
    from .job import explain
    from .procedure import error_return

    settings = job.Settings(preset=(config.get_property("preset") or "").strip(),
                            server=(config.get_property("server") or "").strip(),
                            token=(config.get_property("token") or "").strip())
    accept = bool(config.get_property("accept-licences"))
    if run_mode == Gimp.RunMode.INTERACTIVE:
        from . import dialog

        try:
            plan = job.plan_download(settings)
        except client.ClientError as e:
            return error_return(procedure, explain(e))
        if not dialog.confirm_download(procedure, plan):
            return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, GLib.Error())
        accept = True
    Gimp.progress_init("Dermis: asking the daemon to download")
    reporter = job.Reporter(Gimp.progress_set_text, Gimp.progress_update, describe=editors.download_text)
    try:
        result = job.run_download(settings, accept_licences=accept, on_event=reporter)
    except client.JobCancelled as e:
        Gimp.message(f"Dermis: {e}")
        return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, GLib.Error())
    except client.ClientError as e:
        return error_return(procedure, explain(e))
    finally:
        Gimp.progress_end()
    notes = list(getattr(result, "messages", []) or [])
    if notes and run_mode == Gimp.RunMode.INTERACTIVE:
        Gimp.message("Dermis: " + "\n".join(notes))
    return procedure.new_return_values(Gimp.PDBStatusType.SUCCESS, GLib.Error())
