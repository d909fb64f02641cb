"""The GIMP 3 procedure: registration under Filters → Enhance → Dermis, and its run function.

One image procedure on drawables. Interactive runs show the dialog (GIMP keeps the last values of
every argument); non-interactive runs take everything as arguments, so scripts and batches can call
``plug-in-dermis-refine-skin`` through the PDB. Every failure ends as an error return with a readable
message (GIMP shows it); nothing escapes as a traceback dialog.

Waiting: a GIMP plug-in is its own process, so GIMP's UI stays live while this one blocks on the
daemon. The wait happens after the dialog has closed, on the plug-in's only thread, and every GIMP
call (progress, layers) stays on that thread.
"""

from __future__ import annotations

import sys
import traceback

import gi

gi.require_version("Gimp", "3.0")
from gi.repository import Gimp, GLib, GObject  # noqa: E402

from . import job, models  # noqa: E402
from ._client import editors  # noqa: E402

PROC_NAME = "plug-in-dermis-refine-skin"
MENU_PATH = "<Image>/Filters/Enhance/Dermis"
RW = GObject.ParamFlags.READWRITE


def error_return(procedure, message: str, status=Gimp.PDBStatusType.EXECUTION_ERROR):
    """GIMP's return values for a failure, with the message GIMP shows (also on stderr)."""
    print(f"dermis: {message}", file=sys.stderr)
    return procedure.new_return_values(status, GLib.Error.new_literal(Gimp.PlugIn.error_quark(), message, 0))


def add_arguments(p: Gimp.Procedure) -> None:
    """The procedure's arguments: the dialog's fields, and what a script passes. Preset-dependent
    values (feather, context, denoise) default to 'the preset's': the dialog shows what the daemon
    says the chosen preset uses."""
    p.add_string_argument("preset", "_Preset", "Preset name ('' = the daemon's default: supir-srpo)", "", RW)
    p.add_double_argument("scale", "Sc_ale", "Output scale: 1 refines in place, 2 doubles the image "
                          "(all layers are scaled by GIMP, the refined layer is made at full size)",
                          editors.SCALE_MIN, editors.SCALE_MAX, 1.0, RW)
    output = Gimp.Choice.new()
    output.add(editors.MODE_NORMAL, 0, "Refined skin", "The refined pixels, in Normal mode")
    output.add(editors.MODE_DETAIL, 1, "Detail layer (Grain Merge)",
               "Only the texture the refinement added, around mid-grey, in Grain Merge mode over the "
               "source: your colours stay, the opacity dials the texture")
    p.add_choice_argument("output", "O_utput", "What the new layer holds", output, editors.MODE_NORMAL, RW)
    p.add_int_argument("strength", "Stren_gth", "Opacity of the new layer (or group), in %",
                       0, 100, editors.STRENGTH_DEFAULT, RW)
    p.add_double_argument("feather", "Fea_ther", "Softness of the selection's edge in px "
                          "(-1 = the preset's, as the daemon reports it)", -1.0, 1024.0, -1.0, RW)
    p.add_int_argument("context", "Conte_xt", "Pixels of surroundings the daemon works on around each "
                       "part (-1 = the preset's, as the daemon reports it)", -1, 1024, -1, RW)
    for i, field in enumerate(job.DENOISE_FIELDS):
        p.add_double_argument(field, ("De_noise 1", "Denoise _2")[i],
                              f"Denoise of the preset's stage no. {i + 1} that has a denoise setting, as "
                              "the daemon lists them (0 = the preset's; a preset with fewer, like lite, "
                              "ignores it)", 0.0, 1.0, 0.0, RW)
    p.add_string_argument("overrides", "Overr_ides",
                          "More settings as 'stage.param=value, ...', anything `dermis --set` takes "
                          "(e.g. grain.strength=0.05)", "", RW)
    p.add_int_argument("seed", "S_eed", "Seed (-1 = a new one each run; the layer name shows it)",
                       -1, GLib.MAXINT32, -1, RW)
    p.add_int_argument("variations", "Variation_s", "Seeds per run: that many layers in a group, "
                       "named with their seed, only the first visible", 1, editors.MAX_VARIATIONS, 1, RW)
    p.add_boolean_argument("islands", "Each island separatel_y", "Each separate part of the selection "
                           "is refined on its own (one layer per part, in one group)", True, RW)
    p.add_boolean_argument("faces", "Each _face separately", "Each face the daemon finds in the "
                           "selection is refined on its own (one layer per face, in one group)", False, RW)
    p.add_string_argument("server", "Ser_ver", "Daemon address, e.g. 127.0.0.1:50073 or "
                          "unix:/path ('' = $DERMIS_ADDRESS or the running daemon's)", "", RW)
    p.add_string_argument("token", "_Token", "Daemon token ('' = $DERMIS_TOKEN or the daemon's "
                          "token file); not remembered between runs", "", RW)
    p.add_layer_return_value("layer", "Layer", "The new layer (or layer group)", True, RW)


def run(procedure, run_mode, image, drawables, config, data):
    """The procedure body; returns GIMP return values, never raises."""
    try:
        return _run(procedure, run_mode, image, drawables, config)
    except Exception as e:  # last line of defence: a message, not GIMP's traceback dialog
        traceback.print_exc()
        return error_return(procedure, f"Dermis failed unexpectedly: {e} (the traceback is in GIMP's "
                                 "terminal output; please report it).")
    finally:
        # the token is an argument only so scripts can pass it; GIMP must not store it with the
        # last values
        config.set_property("token", "")


def _run(procedure, run_mode, image, drawables, config):
    from . import image_io

    try:
        layer = image_io.check_image(image, drawables)
    except image_io.UnsupportedImage as e:
        return error_return(procedure, str(e), Gimp.PDBStatusType.CALLING_ERROR)
    try:
        from . import layers
        from ._client import client, islands
    except ImportError as e:
        return error_return(procedure, f"The Dermis plug-in is incomplete ({e}); reinstall it with "
                                 "`dermis install-plugin gimp`.")

    if run_mode == Gimp.RunMode.INTERACTIVE:
        from . import dialog

        if not dialog.ask(procedure, config):
            return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, GLib.Error())

    try:
        settings = job.Settings.from_config(config)
        settings.check()
        with client.Client(settings.server or None, settings.token or None) as c:
            preset = job.preset_info(c, settings.preset)
            padding = editors.padding_for(settings.context_px(preset))
            source = image_io.read_source(image, layer, padding)
            faces = None
            if settings.faces:
                picture, w, h, factor = image_io.face_picture(layer, source)
                faces = [(round(x * factor), round(y * factor), round(fw * factor), round(fh * factor))
                         for x, y, fw, fh in c.find_faces(picture, w, h, 3)]
        parts, notes = islands.split(source.mask, source.width, source.height, padding=padding,
                                     islands=settings.islands, faces=faces)
        if not parts:
            raise image_io.UnsupportedImage("The selection is empty on this layer.")
        notes += settings.override_map(preset)[1]
        seeds = settings.seeds()
        requests, pieces = [], []
        for seed in seeds:
            for part in parts:
                requests.append(job.job_request(
                    settings, pixels=source.part(part.box), width=part.box[2], height=part.box[3],
                    channels=source.channels, bit_depth=source.bit_depth, mask=part.mask,
                    icc_profile=source.icc_profile, seed=seed, preset=preset))
                pieces.append(layers.Piece(None, part.box, part.label, seed == seeds[0]))
    except (image_io.UnsupportedImage, job.SettingsError) as e:
        return error_return(procedure, str(e), Gimp.PDBStatusType.CALLING_ERROR)
    except client.ClientError as e:
        return error_return(procedure, job.explain(e))

    # the window the run came from (None from a script): GIMP 3 keeps a closed image alive for the
    # running plug-in, so only that window going away tells the plug-in the image was closed
    window = Gimp.default_display()
    window = window if window is not None and window.is_valid() else None
    Gimp.progress_init("Dermis: sending the image to the daemon")
    reporter = job.Reporter(Gimp.progress_set_text, Gimp.progress_update)
    try:
        results = job.run_jobs(settings, requests, reporter)
    except client.JobCancelled as e:
        # GIMP's own Cancel kills this process (the guard tells the daemon), so a cancel seen here
        # came from elsewhere (`dermis` CLI, daemon shutdown): say so
        Gimp.message(f"Dermis: {e}")
        return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, GLib.Error())
    except client.ClientError as e:
        return error_return(procedure, job.explain(e))
    finally:
        Gimp.progress_end()

    for piece, result in zip(pieces, results, strict=True):
        piece.result = result
    try:
        closed = not image.is_valid() or (window is not None and not window.is_valid())
        top, placed_notes = layers.insert(image, layer, source, pieces, scale=settings.scale,
                                          detail=settings.output == editors.MODE_DETAIL,
                                          strength=settings.strength, closed=closed)
    except ValueError as e:
        return error_return(procedure, f"Dermis: {e}")
    notes += placed_notes + reporter.messages
    notes += [m for r in results for m in r.messages if m not in notes]
    if notes:  # e.g. an optional stage skipped for want of weights: worth knowing, not an error
        Gimp.message("Dermis: " + "\n".join(notes))
    return Gimp.ValueArray.new_from_values([
        GObject.Value(Gimp.PDBStatusType, Gimp.PDBStatusType.SUCCESS),
        GObject.Value(Gimp.Layer, top),
    ])


class DermisPlugIn(Gimp.PlugIn):
    def do_query_procedures(self):
        return [PROC_NAME, models.DOWNLOAD_PROC]

    def do_set_i18n(self, name):
        return False

    def do_create_procedure(self, name):
        if name == models.DOWNLOAD_PROC:
            return models.create(self, name, MENU_PATH)
        p = Gimp.ImageProcedure.new(self, name, Gimp.PDBProcType.PLUGIN, run, None)
        p.set_image_types("RGB*, GRAY*")
        p.set_sensitivity_mask(Gimp.ProcedureSensitivityMask.DRAWABLE)
        p.set_menu_label("Refine skin…")
        p.add_menu_path(MENU_PATH)
        p.set_documentation(
            "Refine skin with Dermis",
            "Sends the active layer (inside the selection, if any) to the Dermis daemon and adds the "
            "refined skin as a new layer above it, masked by the feathered selection. "
            "Needs `dermis serve` running.",
            name,
        )
        p.set_attribution("Dermis", "Dermis contributors", "2025")
        add_arguments(p)
        return p


def main() -> None:
    Gimp.main(DermisPlugIn.__gtype__, sys.argv)
