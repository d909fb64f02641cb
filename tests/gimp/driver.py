"""Batch driver run INSIDE GIMP 3 (gimp-console --batch-interpreter=python-fu-eval -b - < driver.py).

It has no __file__ and no numpy: it reads a JSON spec ($DERMIS_GIMP_SPEC), builds each case's image
from raw pixel files, calls the installed plug-in through the PDB in non-interactive mode, and dumps
what it finds (layers, offsets, sizes, masks, raw pixels) to $DERMIS_GIMP_OUT for the host test to
judge with numpy against pipeline.run. A failure of the driver itself (not of a case) raises, which
makes gimp-console exit non-zero.
"""

import json
import os
import time
import traceback

import gi

gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
from gi.repository import Gegl, Gimp, Gio  # noqa: E402

PROC = "plug-in-dermis-refine-skin"
SPEC = json.load(open(os.environ["DERMIS_GIMP_SPEC"]))
OUT = os.environ["DERMIS_GIMP_OUT"]
BASE = {"rgb": Gimp.ImageBaseType.RGB, "gray": Gimp.ImageBaseType.GRAY}
PRECISION = {"u8": Gimp.Precision.U8_NON_LINEAR, "u16": Gimp.Precision.U16_NON_LINEAR,
             "float_linear": Gimp.Precision.FLOAT_LINEAR}
RUN_MODE = {"noninteractive": Gimp.RunMode.NONINTERACTIVE, "interactive": Gimp.RunMode.INTERACTIVE,
            "last": Gimp.RunMode.WITH_LAST_VALS}
LAYER_TYPE = {("rgb", False): Gimp.ImageType.RGB_IMAGE, ("rgb", True): Gimp.ImageType.RGBA_IMAGE,
              ("gray", False): Gimp.ImageType.GRAY_IMAGE, ("gray", True): Gimp.ImageType.GRAYA_IMAGE}


def rect(x, y, w, h):
    return Gegl.Rectangle.new(x, y, w, h)


def read(drawable, fmt):
    w, h = drawable.get_width(), drawable.get_height()
    return bytes(drawable.get_buffer().get(rect(0, 0, w, h), 1.0, fmt, Gegl.AbyssPolicy.CLAMP))


def dump(name, data):
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(data)
    return name


def build(case):
    base, depth = case["base"], case["depth"]
    img = Gimp.Image.new_with_precision(case["width"], case["height"], BASE[base], PRECISION[depth])
    layers = []
    for spec in case["layers"]:  # bottom first
        layer = Gimp.Layer.new(img, spec["name"], spec["w"], spec["h"], LAYER_TYPE[(base, spec["alpha"])],
                               100.0, Gimp.LayerMode.NORMAL)
        img.insert_layer(layer, None, 0)
        layer.set_offsets(*spec["offset"])
        buf = layer.get_buffer()
        buf.set(rect(0, 0, spec["w"], spec["h"]), spec["format"], open(spec["file"], "rb").read())
        buf.flush()
        layers.append(layer)
    sel = case.get("selection")
    if sel:
        op = Gimp.ChannelOps.REPLACE
        for shape in sel.get("shapes", [sel]):  # several shapes add up (selection islands)
            if shape["kind"] == "ellipse":
                img.select_ellipse(op, shape["x"], shape["y"], shape["w"], shape["h"])
            else:
                img.select_rectangle(op, shape["x"], shape["y"], shape["w"], shape["h"])
            op = Gimp.ChannelOps.ADD
        if sel.get("feather"):
            Gimp.Selection.feather(img, float(sel["feather"]))
    if case.get("indexed"):
        img.convert_indexed(Gimp.ConvertDitherType.NONE, Gimp.ConvertPaletteType.GENERATE, 16,
                            False, False, "")
    return img, layers


def describe(case, layer, key):
    """Name, place, size, mode, opacity, visibility, mask of a layer (and of a group's children);
    the pixels and mask of Dermis layers go to files."""
    _, x, y = layer.get_offsets()
    mask = layer.get_mask()
    entry = {"name": layer.get_name(), "offset": [x, y], "size": [layer.get_width(), layer.get_height()],
             "has_mask": mask is not None, "has_alpha": layer.has_alpha(),
             "mode": layer.get_mode().value_nick, "opacity": round(layer.get_opacity(), 3),
             "visible": layer.get_visible(), "group": layer.is_group()}
    if layer.is_group():
        entry["children"] = [describe(case, child, f"{key}.{i}") for i, child in enumerate(layer.get_children())]
    elif layer.get_name().startswith("Dermis") and not case.get("indexed"):
        entry["pixels"] = dump(key + ".result", read(layer, case["result_format"]))
        if mask is not None:
            entry["mask"] = dump(key + ".mask", read(mask, case["mask_format"]))
    return entry


def insert_without_undo_group(img, source):
    """The negative control of the one-undo-step checks: what the plug-in inserts for two islands (a
    group, a layer per island, each with its layer mask), step by step as layers.py does it, but
    without undo_group_start/end around it."""
    group = Gimp.GroupLayer.new(img, "Dermis (no undo group)")
    img.insert_layer(group, None, img.get_item_position(source))
    for i in range(2):
        layer = Gimp.Layer.new(img, f"island {i + 1}", 16, 16, Gimp.ImageType.RGBA_IMAGE, 100.0,
                               Gimp.LayerMode.NORMAL)
        img.insert_layer(layer, group, i)
        layer.set_offsets(8 + 40 * i, 8)
        layer.add_mask(layer.create_mask(Gimp.AddMaskType.ALPHA_TRANSFER))
    img.set_selected_layers([group])
    return group


def describe_new_image(case, image):
    """A new image the plug-in made (the case's own was closed): its layers, all of them dumped."""
    key = case["name"] + ".new"
    out = {"name": image.get_name(), "size": [image.get_width(), image.get_height()],
           "dirty": image.is_dirty(), "layers": [describe(case, ly, f"{key}.{i}")
                                                  for i, ly in enumerate(image.get_layers())]}
    for i, (entry, layer) in enumerate(zip(out["layers"], image.get_layers(), strict=True)):
        if "pixels" not in entry and not layer.is_group():
            entry["pixels"] = dump(f"{key}.{i}.all", read(layer, case["result_format"]))
    return out


def run_case(case):
    img, layers = build(case)
    source = layers[case["source"]]
    fmt = case["read_format"]
    rec = {"name": case["name"], "title": case.get("title")}
    before = {ly.get_name(): read(ly, fmt) for ly in layers} if not case.get("indexed") else {}
    rec["selection"] = dump(case["name"] + ".selection", bytes(img.get_selection().get_buffer().get(
        rect(0, 0, img.get_width(), img.get_height()), 1.0, "Y u8", Gegl.AbyssPolicy.NONE)))
    rec["source_before"] = dump(case["name"] + ".source", before.get(source.get_name(), b""))

    name = case.get("proc", PROC)
    proc = Gimp.get_pdb().lookup_procedure(name)
    if proc is None:
        raise RuntimeError(f"{name} is not registered: the plug-in did not load")
    rec["menu"] = [proc.get_menu_label(), list(proc.get_menu_paths()), proc.get_image_types()]
    # a window for the image when GIMP has a GUI, as when a user runs the filter from the menu
    if case.get("title"):  # so press_keys.sh can find the image window by its title
        img.set_file(Gio.File.new_for_path(f"/tmp/{case['title']}.xcf"))
    other = None
    if case.get("other_image"):  # another image open in its own window, as a retoucher has them
        other = Gimp.Image.new(64, 48, Gimp.ImageBaseType.RGB)
        other.insert_layer(Gimp.Layer.new(other, "other", 64, 48, Gimp.ImageType.RGB_IMAGE, 100.0,
                                          Gimp.LayerMode.NORMAL), None, 0)
        other.clean_all()
        other = Gimp.Display.new(other)
    display = Gimp.Display.new(img) if case.get("display") else None
    if display is not None and other is not None:
        display.present()  # the user works on this one
    if case.get("clean"):  # as if just saved: closing the window asks nothing
        img.clean_all()
    if case.get("insert_without_undo_group"):
        rec["status"] = "success"
        rec["returned_layer"] = insert_without_undo_group(img, source).get_name()
        res = None
    else:
        cfg = proc.create_config()
        cfg.set_property("run-mode", RUN_MODE[case.get("run_mode", "noninteractive")])
        cfg.set_property("image", img)
        cfg.set_core_object_array("drawables", [source])
        for key, value in case["args"].items():
            cfg.set_property(key, value)
        t0 = time.monotonic()
        res = proc.run(cfg)
        rec["seconds"] = round(time.monotonic() - t0, 3)
        rec["status"] = res.index(0).value_nick
        if res.index(0) == Gimp.PDBStatusType.SUCCESS and res.length() > 1:
            returned = res.index(1)
            rec["returned_layer"] = returned.get_name() if returned is not None else None
            if returned is not None and not img.is_valid():
                rec["new_image"] = describe_new_image(case, returned.get_image())
                returned.get_image().delete()
        elif res.index(0) != Gimp.PDBStatusType.SUCCESS and res.length() > 1:
            rec["error"] = res.index(1)
    rec["image_closed"] = not img.is_valid()
    if other is not None:
        other.delete()
    if rec["image_closed"]:
        return rec
    rec["image_size"] = [img.get_width(), img.get_height()]
    rec["layers"] = [describe(case, layer, f"{case['name']}.{i}") for i, layer in enumerate(img.get_layers())]
    if case.get("composite") and res is not None and res.index(0) == Gimp.PDBStatusType.SUCCESS:
        # the image as GIMP composites it, with the returned layer (or group) at each opacity and
        # mode ("" = as inserted); the layer is put back as it was afterwards
        top = res.index(1)
        mode, opacity = top.get_mode(), top.get_opacity()
        rec["composites"] = {}
        for i, (percent, mode_name) in enumerate(case["composite"]):
            top.set_opacity(float(percent))
            top.set_mode(getattr(Gimp.LayerMode, mode_name) if mode_name else mode)
            dup = img.duplicate()
            rec["composites"][f"{percent}{mode_name}"] = dump(f"{case['name']}.composite{i}",
                                                              read(dup.flatten(), case["read_format"]))
            dup.delete()
        top.set_opacity(opacity)
        top.set_mode(mode)
    rec["unchanged"] = {ly.get_name(): read(ly, fmt) == before[ly.get_name()]
                        for ly in layers if ly.is_valid()} if before else {}
    rec["selected"] = [ly.get_name() for ly in img.get_selected_layers()]
    if case.get("undo"):
        # press_keys.sh now presses ctrl+z in the image window, as a user would; one press must
        # take the whole result away (the plug-in works inside one undo group)
        open(os.path.join(OUT, case["undo"]), "w").close()
        deadline = time.monotonic() + case.get("undo_wait", 30)
        while len(img.get_layers()) != len(layers) and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)  # a second, unwanted undo step would show up here
        rec["after_undo"] = [ly.get_name() for ly in img.get_layers()]
        rec["masks_after_undo"] = [ly.get_mask() is not None for ly in img.get_layers()]
        rec["children_after_undo"] = sum(len(ly.get_children()) for ly in img.get_layers() if ly.is_group())
        dup = img.duplicate()  # the image as GIMP composites it now: the one before the run?
        rec["composite_after_undo"] = dump(case["name"] + ".after_undo", read(dup.flatten(), fmt))
        dup.delete()
    if display is not None:
        display.delete()  # and the image with it, its last display
    if img.is_valid():
        img.delete()
    return rec


if SPEC.get("console_messages"):
    # Gimp.message() to GIMP's terminal (the test's log) instead of a message box in the GUI
    Gimp.message_set_handler(Gimp.MessageHandlerType.CONSOLE)
results = []
for case in SPEC["cases"]:
    try:
        results.append(run_case(case))
    except Exception:
        results.append({"name": case["name"], "driver_error": traceback.format_exc()})
with open(os.path.join(OUT, "results.json"), "w") as f:
    json.dump(results, f, indent=1)
