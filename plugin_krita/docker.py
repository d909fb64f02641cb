"""The Dermis docker: server status, preset options, output and strength, seeds, the jobs with Cancel,
the latest preview, the last message and error.

Widgets only. It reads and changes the shared ``Controller`` and redraws on its ``changed`` signal;
it never talks to the network or to Krita's documents itself.
"""

from __future__ import annotations

from krita import DockWidget
from PyQt5.QtCore import Qt
from PyQt5.QtGui import QImage, QPixmap
from PyQt5.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSlider,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from . import controller, options
from .thin_client import editors

PREVIEW_SIDE = 200  # px: the preview thumbnail's longer side


class DermisDocker(DockWidget):
    def __init__(self) -> None:
        super().__init__()
        self.setWindowTitle("Dermis")
        self.setObjectName("dermis_docker")
        self.ctl = controller.instance()
        self._updating = False  # set while we fill widgets, so their signals are not user edits
        self._controls_for = None  # the PresetInfo the stage widgets were built for
        self._stage_widgets: dict[str, QWidget] = {}

        root = QWidget(self)
        col = QVBoxLayout(root)

        # server
        row = QHBoxLayout()
        self.address = QLineEdit(self.ctl.settings.address)
        self.address.setPlaceholderText("auto (running daemon)")
        self.address.setToolTip("unix:/path/to/socket or 127.0.0.1:PORT; empty = $DERMIS_ADDRESS or "
                                "the address the running `dermis serve` wrote down")
        self.address.editingFinished.connect(self._address_edited)
        self.connect_button = QPushButton("Connect")
        self.connect_button.clicked.connect(self.ctl.refresh)
        row.addWidget(self.address, 1)
        row.addWidget(self.connect_button)
        col.addLayout(row)
        self.server = _wrapping_label()
        self.missing = _wrapping_label("color: #b36b00")
        col.addWidget(self.server)
        col.addWidget(self.missing)
        # model downloads: they run in the daemon; this row only starts, shows and cancels them
        row = QHBoxLayout()
        self.download_button = QPushButton("Download missing models…")
        self.download_button.setToolTip("The daemon downloads the files the chosen preset lacks into its "
                                        "models folder; you see the list, sizes and licences first")
        self.download_button.clicked.connect(self.ctl.plan_download)
        self.download_cancel = QPushButton("Stop download")
        self.download_cancel.clicked.connect(self.ctl.cancel_download)
        row.addWidget(self.download_button, 1)
        row.addWidget(self.download_cancel)
        col.addLayout(row)
        self.download_progress = QProgressBar()
        self.download_progress.setRange(0, 1000)
        self.download_text = _wrapping_label()
        col.addWidget(self.download_progress)
        col.addWidget(self.download_text)
        self.ctl.download_plan_ready.connect(self._confirm_download)

        # options
        form = QFormLayout()
        self.preset = QComboBox()
        self.preset.currentIndexChanged.connect(self._preset_chosen)
        form.addRow("Preset", self.preset)
        self.scale = QComboBox()
        for s in options.SCALES:
            self.scale.addItem(f"{s:g}× " + ("(new layer)" if s == 1 else "(new document)"), s)
        self.scale.currentIndexChanged.connect(self._scale_chosen)
        form.addRow("Scale", self.scale)
        seed_row = QHBoxLayout()
        self.seed = QSpinBox()
        self.seed.setRange(0, options.SEED_MAX)
        self.seed.valueChanged.connect(self._seed_changed)
        self.new_seed = QPushButton("New seed")
        self.new_seed.clicked.connect(self._new_seed)
        seed_row.addWidget(self.seed, 1)
        seed_row.addWidget(self.new_seed)
        form.addRow("Seed", seed_row)
        self.variations = QSpinBox()
        self.variations.setRange(1, editors.MAX_VARIATIONS)
        self.variations.setToolTip("Seeds per run: one layer each (seed, seed+1, …) in a group; only the first "
                                   "is visible")
        self.variations.valueChanged.connect(self._variations_changed)
        form.addRow("Variations", self.variations)
        self.content = QComboBox()
        self.content.addItem("Refined skin", editors.MODE_NORMAL)
        self.content.addItem("Detail layer (Grain Merge)", editors.MODE_DETAIL)
        self.content.setToolTip("Detail layer: only the texture Dermis adds, in Grain Merge mode over your "
                                "layer, so your colours stay; its opacity sets the strength")
        self.content.currentIndexChanged.connect(self._content_chosen)
        form.addRow("Output", self.content)
        strength_row = QHBoxLayout()
        self.strength = QSlider(Qt.Horizontal)
        self.strength.setRange(0, 100)
        self.strength.setToolTip("Opacity of the new layer (you can change it in the Layers docker later)")
        self.strength.valueChanged.connect(self._strength_changed)
        self.strength_text = QLabel()
        strength_row.addWidget(self.strength, 1)
        strength_row.addWidget(self.strength_text)
        form.addRow("Strength", strength_row)
        self.islands = QCheckBox("Each part of the selection separately")
        self.islands.setToolTip("Separate selected areas (e.g. two faces) become jobs of their own, each with "
                                "its own surroundings, returned as one group")
        self.islands.toggled.connect(lambda on: self._set_flag("islands", on))
        self.faces = QCheckBox("Each face separately (the daemon finds them)")
        self.faces.toggled.connect(lambda on: self._set_flag("faces", on))
        form.addRow(self.islands)
        form.addRow(self.faces)
        col.addLayout(form)
        self.stage_form = QFormLayout()
        col.addLayout(self.stage_form)

        # run
        row = QHBoxLayout()
        self.refine_button = QPushButton("Refine skin")
        self.refine_button.setToolTip("The selection (or the whole active layer) → a new layer above it")
        self.refine_button.clicked.connect(lambda: self.ctl.refine(whole_image=False))
        self.whole_button = QPushButton("Whole image")
        self.whole_button.setToolTip("The merged image of the whole canvas → a new layer on top")
        self.whole_button.clicked.connect(lambda: self.ctl.refine(whole_image=True))
        self.cancel_button = QPushButton("Cancel all")
        self.cancel_button.setToolTip("Cancel every queued and running Dermis job")
        self.cancel_button.clicked.connect(self.ctl.cancel_all)
        for b in (self.refine_button, self.whole_button, self.cancel_button):
            row.addWidget(b)
        col.addLayout(row)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.stage_text = _wrapping_label()
        self.jobs_box = QVBoxLayout()  # one row per queued or running job: its state and Cancel
        self._job_rows: dict[str, tuple[QLabel, QPushButton]] = {}
        self.preview = QLabel()
        self.preview.setAlignment(Qt.AlignCenter)
        self.preview_text = _wrapping_label()
        self._preview_shown = None
        self.message = _wrapping_label()
        self.error = _wrapping_label("color: #c0392b")
        col.addWidget(self.progress)
        col.addWidget(self.stage_text)
        col.addLayout(self.jobs_box)
        for w in (self.preview, self.preview_text, self.message, self.error):
            col.addWidget(w)
        col.addStretch(1)
        self.setWidget(root)

        self.ctl.changed.connect(self.refresh_view)
        self.refresh_view()
        if self.ctl.info is None:
            self.ctl.refresh()

    def canvasChanged(self, canvas) -> None:  # required by DockWidget; the docker is per window
        pass

    # -- controller -> widgets --------------------------------------------------------------------
    def refresh_view(self) -> None:
        ctl, s = self.ctl, self.ctl.settings
        self._updating = True
        try:
            self.server.setText(ctl.server_text)
            self.missing.setText(options.describe_missing(ctl.info) if ctl.info else "")
            download = ctl.download
            self.download_button.setVisible(bool(ctl.info) and bool(options.missing_weights(ctl.info)))
            self.download_button.setEnabled(not ctl.downloading)
            self.download_cancel.setVisible(ctl.downloading)
            self.download_cancel.setEnabled(ctl.downloading and not download.cancel_requested)
            self.download_progress.setVisible(download is not None)
            self.download_progress.setValue(int(1000 * download.fraction) if download else 0)
            self.download_text.setText(download.status_text if download else "")
            self._fill_presets()
            self.scale.setCurrentIndex(max(0, self.scale.findData(s.scale)))
            self.seed.setValue(s.seed)
            if ctl.preset_info() is not self._controls_for:
                self._build_stage_controls()
            self.variations.setValue(s.variations)
            self.content.setCurrentIndex(max(0, self.content.findData(s.content)))
            self.strength.setValue(s.strength)
            self.strength_text.setText(f"{s.strength}%")
            self.islands.setChecked(s.islands)
            self.faces.setChecked(s.faces)
            active = ctl.active_jobs()
            self.cancel_button.setEnabled(any(not j.cancel_requested for _, j in active))
            self.progress.setValue(int(1000 * ctl.fraction))
            self.stage_text.setText(f"{len(active)} job(s) queued or running" if active else "")
            self._show_jobs(active)
            self._show_preview()
            self.message.setText(ctl.last_message)
            self.error.setText(ctl.last_error)
        finally:
            self._updating = False

    def _show_jobs(self, active) -> None:
        """One row per queued or running job, with its own Cancel; rows are kept while their job lives."""
        live = {job.id for _, job in active}
        for job_id in [k for k in self._job_rows if k not in live]:
            label, button = self._job_rows.pop(job_id)
            label.deleteLater()
            button.deleteLater()
        for run, job in active:
            if job.id not in self._job_rows:
                label, button = _wrapping_label(), QPushButton("Cancel")
                button.setToolTip("Cancel this job")
                button.clicked.connect(lambda _=False, jid=job.id: self.ctl.cancel(jid))
                row = QHBoxLayout()
                row.addWidget(label, 1)
                row.addWidget(button)
                self.jobs_box.addLayout(row)
                self._job_rows[job.id] = (label, button)
            label, button = self._job_rows[job.id]
            label.setText(f"{run.label_of(job)}: {job.status_text}")
            button.setEnabled(not job.cancel_requested)

    def _show_preview(self) -> None:
        """The latest preview as a thumbnail (the docker keeps the QImage's bytes alive with it)."""
        p = self.ctl.preview
        if p is self._preview_shown:
            return
        self._preview_shown = p
        if p is None:
            self.preview.clear()
            self.preview_text.setText("")
            return
        self._preview_bytes = bytes(p.pixels)
        img = QImage(self._preview_bytes, p.width, p.height, 3 * p.width, QImage.Format_RGB888)
        pix = QPixmap.fromImage(img).scaled(PREVIEW_SIDE, PREVIEW_SIDE, Qt.KeepAspectRatio, Qt.SmoothTransformation)
        self.preview.setPixmap(pix)
        self.preview_text.setText(f"Preview ({self.ctl.preview_label}" + (f", after {p.stage})" if p.stage else ")"))

    def _fill_presets(self) -> None:
        info, s = self.ctl.info, self.ctl.settings
        wanted = [("", "Daemon default" + (f" ({info.default_preset})" if info else ""))]
        if info is not None:
            wanted += [(p.name, p.label if p.label == p.name else f"{p.label} ({p.name})") for p in info.presets]
        elif s.preset:
            wanted.append((s.preset, s.preset))
        have = [(self.preset.itemData(i), self.preset.itemText(i)) for i in range(self.preset.count())]
        if have != wanted:
            self.preset.clear()
            for name, text in wanted:
                self.preset.addItem(text, name)
        self.preset.setCurrentIndex(max(0, self.preset.findData(s.preset)))

    def _build_stage_controls(self) -> None:
        while self.stage_form.rowCount():
            self.stage_form.removeRow(0)
        self._stage_widgets = {}
        self._controls_for = self.ctl.preset_info()
        values = self.ctl.settings.overrides
        for c in self.ctl.controls():
            value = values.get(c.key, c.default)
            if c.kind == "bool":
                w = QCheckBox()
                w.setChecked(value.strip().lower() in ("1", "true", "yes", "on"))
                w.toggled.connect(lambda on, key=c.key: self._set_override(key, "true" if on else "false"))
            elif c.kind == "int":
                w = QSpinBox()
                w.setRange(int(c.minimum), int(c.maximum))
                w.setSingleStep(int(c.step))
                w.setSuffix(c.suffix)
                w.setValue(int(_float(value, c.default)))
                w.valueChanged.connect(lambda v, key=c.key: self._set_override(key, str(v)))
            else:
                w = QDoubleSpinBox()
                w.setRange(c.minimum, c.maximum)
                w.setSingleStep(c.step)
                w.setDecimals(2 if c.step < 1 else 0)
                w.setSuffix(c.suffix)
                w.setValue(_float(value, c.default))
                w.valueChanged.connect(lambda v, key=c.key: self._set_override(key, f"{v:g}"))
            w.setToolTip(f"{c.key} (preset: {c.default})")
            self._stage_widgets[c.key] = w
            self.stage_form.addRow(c.label, w)

    def _confirm_download(self) -> None:
        """Show what would be downloaded (sizes, licences) and start it on a yes."""
        plan = self.ctl.download_plan
        text = plan.describe()
        if not plan.downloads:
            QMessageBox.information(self, "Dermis: models", text)
            return
        answer = QMessageBox.question(self, "Dermis: download models", text + "\n\nDownload now?",
                                      QMessageBox.Yes | QMessageBox.No, QMessageBox.No)
        if answer == QMessageBox.Yes:
            self.ctl.start_download(accept_licences=True)

    # -- widgets -> controller --------------------------------------------------------------------
    def _address_edited(self) -> None:
        text = self.address.text().strip()
        if text != self.ctl.settings.address:
            self.ctl.settings.address = text
            self.ctl.save_settings()
            self.ctl.refresh()

    def _preset_chosen(self, index: int) -> None:
        if not self._updating and index >= 0:
            self.ctl.settings.choose_preset(self.preset.itemData(index) or "")
            self.ctl.save_settings()

    def _scale_chosen(self, index: int) -> None:
        if not self._updating and index >= 0:
            self.ctl.settings.scale = float(self.scale.itemData(index))
            self.ctl.save_settings()

    def _seed_changed(self, value: int) -> None:
        if not self._updating:
            self.ctl.settings.seed = int(value)
            self.ctl.save_settings()

    def _new_seed(self) -> None:
        self.ctl.settings.seed = options.new_seed()
        self.ctl.save_settings()

    def _variations_changed(self, value: int) -> None:
        if not self._updating:
            self.ctl.settings.variations = int(value)
            self.ctl.save_settings()

    def _content_chosen(self, index: int) -> None:
        if not self._updating and index >= 0:
            self.ctl.settings.content = self.content.itemData(index)
            self.ctl.save_settings()

    def _strength_changed(self, value: int) -> None:
        self.strength_text.setText(f"{value}%")
        if not self._updating:
            self.ctl.settings.strength = int(value)
            self.ctl.save_settings()

    def _set_flag(self, name: str, on: bool) -> None:
        if not self._updating:
            setattr(self.ctl.settings, name, bool(on))
            self.ctl.save_settings()

    def _set_override(self, key: str, value: str) -> None:
        if not self._updating:
            self.ctl.settings.overrides[key] = value
            self.ctl.save_settings()


def _wrapping_label(style: str = "") -> QLabel:
    label = QLabel()
    label.setWordWrap(True)
    label.setTextInteractionFlags(Qt.TextSelectableByMouse)
    if style:
        label.setStyleSheet(style)
    return label


def _float(text: str, default: str) -> float:
    try:
        return float(text)
    except ValueError:
        return float(default)
