from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Priority(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PRIORITY_UNSPECIFIED: _ClassVar[Priority]
    PRIORITY_EDITOR: _ClassVar[Priority]
    PRIORITY_BATCH: _ClassVar[Priority]

class OutputMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OUTPUT_MODE_UNSPECIFIED: _ClassVar[OutputMode]
    OUTPUT_MODE_LAYER: _ClassVar[OutputMode]
    OUTPUT_MODE_FULL: _ClassVar[OutputMode]

class ResultContent(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RESULT_CONTENT_UNSPECIFIED: _ClassVar[ResultContent]
    RESULT_CONTENT_NORMAL: _ClassVar[ResultContent]
    RESULT_CONTENT_DETAIL: _ClassVar[ResultContent]

class Blob(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BLOB_UNSPECIFIED: _ClassVar[Blob]
    BLOB_IMAGE: _ClassVar[Blob]
    BLOB_MASK: _ClassVar[Blob]

class JobState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_STATE_UNSPECIFIED: _ClassVar[JobState]
    JOB_STATE_QUEUED: _ClassVar[JobState]
    JOB_STATE_RUNNING: _ClassVar[JobState]
    JOB_STATE_PAUSED: _ClassVar[JobState]
    JOB_STATE_DONE: _ClassVar[JobState]
    JOB_STATE_FAILED: _ClassVar[JobState]
    JOB_STATE_CANCELLED: _ClassVar[JobState]

class WeightStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    WEIGHT_STATUS_UNSPECIFIED: _ClassVar[WeightStatus]
    WEIGHT_STATUS_FOUND: _ClassVar[WeightStatus]
    WEIGHT_STATUS_MISSING: _ClassVar[WeightStatus]
    WEIGHT_STATUS_LOADED: _ClassVar[WeightStatus]
PRIORITY_UNSPECIFIED: Priority
PRIORITY_EDITOR: Priority
PRIORITY_BATCH: Priority
OUTPUT_MODE_UNSPECIFIED: OutputMode
OUTPUT_MODE_LAYER: OutputMode
OUTPUT_MODE_FULL: OutputMode
RESULT_CONTENT_UNSPECIFIED: ResultContent
RESULT_CONTENT_NORMAL: ResultContent
RESULT_CONTENT_DETAIL: ResultContent
BLOB_UNSPECIFIED: Blob
BLOB_IMAGE: Blob
BLOB_MASK: Blob
JOB_STATE_UNSPECIFIED: JobState
JOB_STATE_QUEUED: JobState
JOB_STATE_RUNNING: JobState
JOB_STATE_PAUSED: JobState
JOB_STATE_DONE: JobState
JOB_STATE_FAILED: JobState
JOB_STATE_CANCELLED: JobState
WEIGHT_STATUS_UNSPECIFIED: WeightStatus
WEIGHT_STATUS_FOUND: WeightStatus
WEIGHT_STATUS_MISSING: WeightStatus
WEIGHT_STATUS_LOADED: WeightStatus

class PixelFormat(_message.Message):
    __slots__ = ("width", "height", "channels", "bit_depth")
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    BIT_DEPTH_FIELD_NUMBER: _ClassVar[int]
    width: int
    height: int
    channels: int
    bit_depth: int
    def __init__(self, width: _Optional[int] = ..., height: _Optional[int] = ..., channels: _Optional[int] = ..., bit_depth: _Optional[int] = ...) -> None: ...

class Region(_message.Message):
    __slots__ = ("x", "y", "width", "height")
    X_FIELD_NUMBER: _ClassVar[int]
    Y_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    x: int
    y: int
    width: int
    height: int
    def __init__(self, x: _Optional[int] = ..., y: _Optional[int] = ..., width: _Optional[int] = ..., height: _Optional[int] = ...) -> None: ...

class JobHeader(_message.Message):
    __slots__ = ("job_id", "preset", "scale", "seed", "overrides", "region", "output", "priority", "client_name", "image", "image_bytes", "image_crc32", "icc_profile", "has_mask", "mask_crc32", "content", "detail_sigma", "shared_memory_id")
    class OverridesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    PRESET_FIELD_NUMBER: _ClassVar[int]
    SCALE_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    OVERRIDES_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    CLIENT_NAME_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    IMAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    IMAGE_CRC32_FIELD_NUMBER: _ClassVar[int]
    ICC_PROFILE_FIELD_NUMBER: _ClassVar[int]
    HAS_MASK_FIELD_NUMBER: _ClassVar[int]
    MASK_CRC32_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    DETAIL_SIGMA_FIELD_NUMBER: _ClassVar[int]
    SHARED_MEMORY_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    preset: str
    scale: float
    seed: int
    overrides: _containers.ScalarMap[str, str]
    region: Region
    output: OutputMode
    priority: Priority
    client_name: str
    image: PixelFormat
    image_bytes: int
    image_crc32: int
    icc_profile: bytes
    has_mask: bool
    mask_crc32: int
    content: ResultContent
    detail_sigma: float
    shared_memory_id: str
    def __init__(self, job_id: _Optional[str] = ..., preset: _Optional[str] = ..., scale: _Optional[float] = ..., seed: _Optional[int] = ..., overrides: _Optional[_Mapping[str, str]] = ..., region: _Optional[_Union[Region, _Mapping]] = ..., output: _Optional[_Union[OutputMode, str]] = ..., priority: _Optional[_Union[Priority, str]] = ..., client_name: _Optional[str] = ..., image: _Optional[_Union[PixelFormat, _Mapping]] = ..., image_bytes: _Optional[int] = ..., image_crc32: _Optional[int] = ..., icc_profile: _Optional[bytes] = ..., has_mask: _Optional[bool] = ..., mask_crc32: _Optional[int] = ..., content: _Optional[_Union[ResultContent, str]] = ..., detail_sigma: _Optional[float] = ..., shared_memory_id: _Optional[str] = ...) -> None: ...

class Chunk(_message.Message):
    __slots__ = ("blob", "offset", "data")
    BLOB_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    blob: Blob
    offset: int
    data: bytes
    def __init__(self, blob: _Optional[_Union[Blob, str]] = ..., offset: _Optional[int] = ..., data: _Optional[bytes] = ...) -> None: ...

class SubmitRequest(_message.Message):
    __slots__ = ("header", "chunk")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    header: JobHeader
    chunk: Chunk
    def __init__(self, header: _Optional[_Union[JobHeader, _Mapping]] = ..., chunk: _Optional[_Union[Chunk, _Mapping]] = ...) -> None: ...

class SubmitReply(_message.Message):
    __slots__ = ("job_id", "position", "duplicate")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    position: int
    duplicate: bool
    def __init__(self, job_id: _Optional[str] = ..., position: _Optional[int] = ..., duplicate: _Optional[bool] = ...) -> None: ...

class WatchRequest(_message.Message):
    __slots__ = ("job_id", "after_seq", "result_in_shared_memory")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    AFTER_SEQ_FIELD_NUMBER: _ClassVar[int]
    RESULT_IN_SHARED_MEMORY_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    after_seq: int
    result_in_shared_memory: bool
    def __init__(self, job_id: _Optional[str] = ..., after_seq: _Optional[int] = ..., result_in_shared_memory: _Optional[bool] = ...) -> None: ...

class JobEvent(_message.Message):
    __slots__ = ("job_id", "seq", "queued", "started", "stage", "progress", "preview", "message", "result_chunk", "done", "error", "cancelled")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    QUEUED_FIELD_NUMBER: _ClassVar[int]
    STARTED_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    PREVIEW_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    RESULT_CHUNK_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    CANCELLED_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    seq: int
    queued: Queued
    started: Started
    stage: StageStarted
    progress: Progress
    preview: Preview
    message: Message
    result_chunk: ResultChunk
    done: Done
    error: Error
    cancelled: Cancelled
    def __init__(self, job_id: _Optional[str] = ..., seq: _Optional[int] = ..., queued: _Optional[_Union[Queued, _Mapping]] = ..., started: _Optional[_Union[Started, _Mapping]] = ..., stage: _Optional[_Union[StageStarted, _Mapping]] = ..., progress: _Optional[_Union[Progress, _Mapping]] = ..., preview: _Optional[_Union[Preview, _Mapping]] = ..., message: _Optional[_Union[Message, _Mapping]] = ..., result_chunk: _Optional[_Union[ResultChunk, _Mapping]] = ..., done: _Optional[_Union[Done, _Mapping]] = ..., error: _Optional[_Union[Error, _Mapping]] = ..., cancelled: _Optional[_Union[Cancelled, _Mapping]] = ...) -> None: ...

class Queued(_message.Message):
    __slots__ = ("position",)
    POSITION_FIELD_NUMBER: _ClassVar[int]
    position: int
    def __init__(self, position: _Optional[int] = ...) -> None: ...

class Started(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StageStarted(_message.Message):
    __slots__ = ("stage", "message")
    STAGE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    stage: str
    message: str
    def __init__(self, stage: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class Progress(_message.Message):
    __slots__ = ("stage", "step", "steps", "tile", "tiles", "fraction", "message")
    STAGE_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    TILE_FIELD_NUMBER: _ClassVar[int]
    TILES_FIELD_NUMBER: _ClassVar[int]
    FRACTION_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    stage: str
    step: int
    steps: int
    tile: int
    tiles: int
    fraction: float
    message: str
    def __init__(self, stage: _Optional[str] = ..., step: _Optional[int] = ..., steps: _Optional[int] = ..., tile: _Optional[int] = ..., tiles: _Optional[int] = ..., fraction: _Optional[float] = ..., message: _Optional[str] = ...) -> None: ...

class Preview(_message.Message):
    __slots__ = ("width", "height", "pixels", "area_x", "area_y", "area_width", "area_height", "stage")
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    PIXELS_FIELD_NUMBER: _ClassVar[int]
    AREA_X_FIELD_NUMBER: _ClassVar[int]
    AREA_Y_FIELD_NUMBER: _ClassVar[int]
    AREA_WIDTH_FIELD_NUMBER: _ClassVar[int]
    AREA_HEIGHT_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    width: int
    height: int
    pixels: bytes
    area_x: int
    area_y: int
    area_width: int
    area_height: int
    stage: str
    def __init__(self, width: _Optional[int] = ..., height: _Optional[int] = ..., pixels: _Optional[bytes] = ..., area_x: _Optional[int] = ..., area_y: _Optional[int] = ..., area_width: _Optional[int] = ..., area_height: _Optional[int] = ..., stage: _Optional[str] = ...) -> None: ...

class Message(_message.Message):
    __slots__ = ("stage", "text")
    STAGE_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    stage: str
    text: str
    def __init__(self, stage: _Optional[str] = ..., text: _Optional[str] = ...) -> None: ...

class ResultChunk(_message.Message):
    __slots__ = ("offset", "data")
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    offset: int
    data: bytes
    def __init__(self, offset: _Optional[int] = ..., data: _Optional[bytes] = ...) -> None: ...

class Done(_message.Message):
    __slots__ = ("result",)
    RESULT_FIELD_NUMBER: _ClassVar[int]
    result: ResultInfo
    def __init__(self, result: _Optional[_Union[ResultInfo, _Mapping]] = ...) -> None: ...

class ResultInfo(_message.Message):
    __slots__ = ("format", "bytes", "crc32", "offset_x", "offset_y", "canvas_width", "canvas_height", "layer_name", "preset", "seed", "icc_profile", "messages", "stage_seconds", "content", "shared_memory_id")
    class StageSecondsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    CRC32_FIELD_NUMBER: _ClassVar[int]
    OFFSET_X_FIELD_NUMBER: _ClassVar[int]
    OFFSET_Y_FIELD_NUMBER: _ClassVar[int]
    CANVAS_WIDTH_FIELD_NUMBER: _ClassVar[int]
    CANVAS_HEIGHT_FIELD_NUMBER: _ClassVar[int]
    LAYER_NAME_FIELD_NUMBER: _ClassVar[int]
    PRESET_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    ICC_PROFILE_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    STAGE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    SHARED_MEMORY_ID_FIELD_NUMBER: _ClassVar[int]
    format: PixelFormat
    bytes: int
    crc32: int
    offset_x: int
    offset_y: int
    canvas_width: int
    canvas_height: int
    layer_name: str
    preset: str
    seed: int
    icc_profile: bytes
    messages: _containers.RepeatedScalarFieldContainer[str]
    stage_seconds: _containers.ScalarMap[str, float]
    content: ResultContent
    shared_memory_id: str
    def __init__(self, format: _Optional[_Union[PixelFormat, _Mapping]] = ..., bytes: _Optional[int] = ..., crc32: _Optional[int] = ..., offset_x: _Optional[int] = ..., offset_y: _Optional[int] = ..., canvas_width: _Optional[int] = ..., canvas_height: _Optional[int] = ..., layer_name: _Optional[str] = ..., preset: _Optional[str] = ..., seed: _Optional[int] = ..., icc_profile: _Optional[bytes] = ..., messages: _Optional[_Iterable[str]] = ..., stage_seconds: _Optional[_Mapping[str, float]] = ..., content: _Optional[_Union[ResultContent, str]] = ..., shared_memory_id: _Optional[str] = ...) -> None: ...

class Error(_message.Message):
    __slots__ = ("code", "message", "stage")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    code: str
    message: str
    stage: str
    def __init__(self, code: _Optional[str] = ..., message: _Optional[str] = ..., stage: _Optional[str] = ...) -> None: ...

class Cancelled(_message.Message):
    __slots__ = ("message",)
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    message: str
    def __init__(self, message: _Optional[str] = ...) -> None: ...

class CancelRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class CancelReply(_message.Message):
    __slots__ = ("state",)
    STATE_FIELD_NUMBER: _ClassVar[int]
    state: JobState
    def __init__(self, state: _Optional[_Union[JobState, str]] = ...) -> None: ...

class ListJobsRequest(_message.Message):
    __slots__ = ("include_finished",)
    INCLUDE_FINISHED_FIELD_NUMBER: _ClassVar[int]
    include_finished: bool
    def __init__(self, include_finished: _Optional[bool] = ...) -> None: ...

class JobInfo(_message.Message):
    __slots__ = ("job_id", "state", "preset", "priority", "client_name", "fraction", "position", "error_code", "message", "submitted_unix", "kind")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PRESET_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    CLIENT_NAME_FIELD_NUMBER: _ClassVar[int]
    FRACTION_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    SUBMITTED_UNIX_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    state: JobState
    preset: str
    priority: Priority
    client_name: str
    fraction: float
    position: int
    error_code: str
    message: str
    submitted_unix: float
    kind: str
    def __init__(self, job_id: _Optional[str] = ..., state: _Optional[_Union[JobState, str]] = ..., preset: _Optional[str] = ..., priority: _Optional[_Union[Priority, str]] = ..., client_name: _Optional[str] = ..., fraction: _Optional[float] = ..., position: _Optional[int] = ..., error_code: _Optional[str] = ..., message: _Optional[str] = ..., submitted_unix: _Optional[float] = ..., kind: _Optional[str] = ...) -> None: ...

class ClientCounts(_message.Message):
    __slots__ = ("client_name", "queued", "running", "done", "failed", "cancelled")
    CLIENT_NAME_FIELD_NUMBER: _ClassVar[int]
    QUEUED_FIELD_NUMBER: _ClassVar[int]
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    CANCELLED_FIELD_NUMBER: _ClassVar[int]
    client_name: str
    queued: int
    running: int
    done: int
    failed: int
    cancelled: int
    def __init__(self, client_name: _Optional[str] = ..., queued: _Optional[int] = ..., running: _Optional[int] = ..., done: _Optional[int] = ..., failed: _Optional[int] = ..., cancelled: _Optional[int] = ...) -> None: ...

class WatchFolderCounts(_message.Message):
    __slots__ = ("folder", "out", "preset", "pending", "running", "done", "skipped", "failed", "error")
    FOLDER_FIELD_NUMBER: _ClassVar[int]
    OUT_FIELD_NUMBER: _ClassVar[int]
    PRESET_FIELD_NUMBER: _ClassVar[int]
    PENDING_FIELD_NUMBER: _ClassVar[int]
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    folder: str
    out: str
    preset: str
    pending: int
    running: int
    done: int
    skipped: int
    failed: int
    error: str
    def __init__(self, folder: _Optional[str] = ..., out: _Optional[str] = ..., preset: _Optional[str] = ..., pending: _Optional[int] = ..., running: _Optional[int] = ..., done: _Optional[int] = ..., skipped: _Optional[int] = ..., failed: _Optional[int] = ..., error: _Optional[str] = ...) -> None: ...

class ListJobsReply(_message.Message):
    __slots__ = ("jobs", "counts", "folders")
    JOBS_FIELD_NUMBER: _ClassVar[int]
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    FOLDERS_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[JobInfo]
    counts: _containers.RepeatedCompositeFieldContainer[ClientCounts]
    folders: _containers.RepeatedCompositeFieldContainer[WatchFolderCounts]
    def __init__(self, jobs: _Optional[_Iterable[_Union[JobInfo, _Mapping]]] = ..., counts: _Optional[_Iterable[_Union[ClientCounts, _Mapping]]] = ..., folders: _Optional[_Iterable[_Union[WatchFolderCounts, _Mapping]]] = ...) -> None: ...

class GetServerInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ServerInfo(_message.Message):
    __slots__ = ("version", "api_version", "device", "vram_free", "vram_total", "default_preset", "presets", "weights", "queue_length", "loaded_models", "model_budget", "limits", "capabilities", "catalogue", "shared_memory_dir", "flux_memory", "workers")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    API_VERSION_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    VRAM_FREE_FIELD_NUMBER: _ClassVar[int]
    VRAM_TOTAL_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_PRESET_FIELD_NUMBER: _ClassVar[int]
    PRESETS_FIELD_NUMBER: _ClassVar[int]
    WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    QUEUE_LENGTH_FIELD_NUMBER: _ClassVar[int]
    LOADED_MODELS_FIELD_NUMBER: _ClassVar[int]
    MODEL_BUDGET_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    CATALOGUE_FIELD_NUMBER: _ClassVar[int]
    SHARED_MEMORY_DIR_FIELD_NUMBER: _ClassVar[int]
    FLUX_MEMORY_FIELD_NUMBER: _ClassVar[int]
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    version: str
    api_version: int
    device: str
    vram_free: int
    vram_total: int
    default_preset: str
    presets: _containers.RepeatedCompositeFieldContainer[PresetInfo]
    weights: _containers.RepeatedCompositeFieldContainer[WeightInfo]
    queue_length: int
    loaded_models: _containers.RepeatedCompositeFieldContainer[LoadedModel]
    model_budget: int
    limits: Limits
    capabilities: _containers.RepeatedScalarFieldContainer[str]
    catalogue: _containers.RepeatedCompositeFieldContainer[ModelFile]
    shared_memory_dir: str
    flux_memory: _containers.RepeatedScalarFieldContainer[str]
    workers: _containers.RepeatedCompositeFieldContainer[WorkerInfo]
    def __init__(self, version: _Optional[str] = ..., api_version: _Optional[int] = ..., device: _Optional[str] = ..., vram_free: _Optional[int] = ..., vram_total: _Optional[int] = ..., default_preset: _Optional[str] = ..., presets: _Optional[_Iterable[_Union[PresetInfo, _Mapping]]] = ..., weights: _Optional[_Iterable[_Union[WeightInfo, _Mapping]]] = ..., queue_length: _Optional[int] = ..., loaded_models: _Optional[_Iterable[_Union[LoadedModel, _Mapping]]] = ..., model_budget: _Optional[int] = ..., limits: _Optional[_Union[Limits, _Mapping]] = ..., capabilities: _Optional[_Iterable[str]] = ..., catalogue: _Optional[_Iterable[_Union[ModelFile, _Mapping]]] = ..., shared_memory_dir: _Optional[str] = ..., flux_memory: _Optional[_Iterable[str]] = ..., workers: _Optional[_Iterable[_Union[WorkerInfo, _Mapping]]] = ...) -> None: ...

class WorkerInfo(_message.Message):
    __slots__ = ("name", "host", "device", "vram_free", "vram_total", "loaded_models", "job_id", "removed")
    NAME_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    VRAM_FREE_FIELD_NUMBER: _ClassVar[int]
    VRAM_TOTAL_FIELD_NUMBER: _ClassVar[int]
    LOADED_MODELS_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    name: str
    host: str
    device: str
    vram_free: int
    vram_total: int
    loaded_models: _containers.RepeatedCompositeFieldContainer[LoadedModel]
    job_id: str
    removed: str
    def __init__(self, name: _Optional[str] = ..., host: _Optional[str] = ..., device: _Optional[str] = ..., vram_free: _Optional[int] = ..., vram_total: _Optional[int] = ..., loaded_models: _Optional[_Iterable[_Union[LoadedModel, _Mapping]]] = ..., job_id: _Optional[str] = ..., removed: _Optional[str] = ...) -> None: ...

class PresetInfo(_message.Message):
    __slots__ = ("name", "label", "description", "scale", "stages", "context", "feather", "previews")
    NAME_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    SCALE_FIELD_NUMBER: _ClassVar[int]
    STAGES_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    FEATHER_FIELD_NUMBER: _ClassVar[int]
    PREVIEWS_FIELD_NUMBER: _ClassVar[int]
    name: str
    label: str
    description: str
    scale: float
    stages: _containers.RepeatedCompositeFieldContainer[StageInfo]
    context: int
    feather: float
    previews: bool
    def __init__(self, name: _Optional[str] = ..., label: _Optional[str] = ..., description: _Optional[str] = ..., scale: _Optional[float] = ..., stages: _Optional[_Iterable[_Union[StageInfo, _Mapping]]] = ..., context: _Optional[int] = ..., feather: _Optional[float] = ..., previews: _Optional[bool] = ...) -> None: ...

class StageInfo(_message.Message):
    __slots__ = ("id", "kind", "enabled", "optional", "params")
    class ParamsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    OPTIONAL_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    id: str
    kind: str
    enabled: bool
    optional: bool
    params: _containers.ScalarMap[str, str]
    def __init__(self, id: _Optional[str] = ..., kind: _Optional[str] = ..., enabled: _Optional[bool] = ..., optional: _Optional[bool] = ..., params: _Optional[_Mapping[str, str]] = ...) -> None: ...

class WeightInfo(_message.Message):
    __slots__ = ("key", "description", "status", "path")
    KEY_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    key: str
    description: str
    status: WeightStatus
    path: str
    def __init__(self, key: _Optional[str] = ..., description: _Optional[str] = ..., status: _Optional[_Union[WeightStatus, str]] = ..., path: _Optional[str] = ...) -> None: ...

class LoadedModel(_message.Message):
    __slots__ = ("key", "bytes")
    KEY_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    key: str
    bytes: int
    def __init__(self, key: _Optional[str] = ..., bytes: _Optional[int] = ...) -> None: ...

class Limits(_message.Message):
    __slots__ = ("max_pixels", "max_output_pixels", "max_chunk_bytes", "max_queue")
    MAX_PIXELS_FIELD_NUMBER: _ClassVar[int]
    MAX_OUTPUT_PIXELS_FIELD_NUMBER: _ClassVar[int]
    MAX_CHUNK_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_QUEUE_FIELD_NUMBER: _ClassVar[int]
    max_pixels: int
    max_output_pixels: int
    max_chunk_bytes: int
    max_queue: int
    def __init__(self, max_pixels: _Optional[int] = ..., max_output_pixels: _Optional[int] = ..., max_chunk_bytes: _Optional[int] = ..., max_queue: _Optional[int] = ...) -> None: ...

class UnloadModelsRequest(_message.Message):
    __slots__ = ("key",)
    KEY_FIELD_NUMBER: _ClassVar[int]
    key: str
    def __init__(self, key: _Optional[str] = ...) -> None: ...

class UnloadModelsReply(_message.Message):
    __slots__ = ("unloaded", "freed_bytes")
    UNLOADED_FIELD_NUMBER: _ClassVar[int]
    FREED_BYTES_FIELD_NUMBER: _ClassVar[int]
    unloaded: int
    freed_bytes: int
    def __init__(self, unloaded: _Optional[int] = ..., freed_bytes: _Optional[int] = ...) -> None: ...

class FetchModelsRequest(_message.Message):
    __slots__ = ("job_id", "preset", "roles", "variant", "dry_run", "accept_licences", "client_name")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    PRESET_FIELD_NUMBER: _ClassVar[int]
    ROLES_FIELD_NUMBER: _ClassVar[int]
    VARIANT_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    ACCEPT_LICENCES_FIELD_NUMBER: _ClassVar[int]
    CLIENT_NAME_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    preset: str
    roles: _containers.RepeatedScalarFieldContainer[str]
    variant: str
    dry_run: bool
    accept_licences: bool
    client_name: str
    def __init__(self, job_id: _Optional[str] = ..., preset: _Optional[str] = ..., roles: _Optional[_Iterable[str]] = ..., variant: _Optional[str] = ..., dry_run: _Optional[bool] = ..., accept_licences: _Optional[bool] = ..., client_name: _Optional[str] = ...) -> None: ...

class ModelFile(_message.Message):
    __slots__ = ("role", "variant", "filename", "size", "size_exact", "licence", "non_commercial", "gated", "source", "page", "path", "action", "note", "supported", "is_default")
    ROLE_FIELD_NUMBER: _ClassVar[int]
    VARIANT_FIELD_NUMBER: _ClassVar[int]
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    SIZE_EXACT_FIELD_NUMBER: _ClassVar[int]
    LICENCE_FIELD_NUMBER: _ClassVar[int]
    NON_COMMERCIAL_FIELD_NUMBER: _ClassVar[int]
    GATED_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    SUPPORTED_FIELD_NUMBER: _ClassVar[int]
    IS_DEFAULT_FIELD_NUMBER: _ClassVar[int]
    role: str
    variant: str
    filename: str
    size: int
    size_exact: bool
    licence: str
    non_commercial: bool
    gated: bool
    source: str
    page: str
    path: str
    action: str
    note: str
    supported: bool
    is_default: bool
    def __init__(self, role: _Optional[str] = ..., variant: _Optional[str] = ..., filename: _Optional[str] = ..., size: _Optional[int] = ..., size_exact: _Optional[bool] = ..., licence: _Optional[str] = ..., non_commercial: _Optional[bool] = ..., gated: _Optional[bool] = ..., source: _Optional[str] = ..., page: _Optional[str] = ..., path: _Optional[str] = ..., action: _Optional[str] = ..., note: _Optional[str] = ..., supported: _Optional[bool] = ..., is_default: _Optional[bool] = ...) -> None: ...

class FindFacesRequest(_message.Message):
    __slots__ = ("image", "pixels")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    PIXELS_FIELD_NUMBER: _ClassVar[int]
    image: PixelFormat
    pixels: bytes
    def __init__(self, image: _Optional[_Union[PixelFormat, _Mapping]] = ..., pixels: _Optional[bytes] = ...) -> None: ...

class FindFacesReply(_message.Message):
    __slots__ = ("faces",)
    FACES_FIELD_NUMBER: _ClassVar[int]
    faces: _containers.RepeatedCompositeFieldContainer[Region]
    def __init__(self, faces: _Optional[_Iterable[_Union[Region, _Mapping]]] = ...) -> None: ...

class FetchModelsReply(_message.Message):
    __slots__ = ("job_id", "files", "download_bytes", "free_bytes", "folder", "licences_to_accept")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    FILES_FIELD_NUMBER: _ClassVar[int]
    DOWNLOAD_BYTES_FIELD_NUMBER: _ClassVar[int]
    FREE_BYTES_FIELD_NUMBER: _ClassVar[int]
    FOLDER_FIELD_NUMBER: _ClassVar[int]
    LICENCES_TO_ACCEPT_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    files: _containers.RepeatedCompositeFieldContainer[ModelFile]
    download_bytes: int
    free_bytes: int
    folder: str
    licences_to_accept: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, job_id: _Optional[str] = ..., files: _Optional[_Iterable[_Union[ModelFile, _Mapping]]] = ..., download_bytes: _Optional[int] = ..., free_bytes: _Optional[int] = ..., folder: _Optional[str] = ..., licences_to_accept: _Optional[_Iterable[str]] = ...) -> None: ...
