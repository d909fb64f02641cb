"""The dermis.v1.Dermis servicer: translates requests into queue calls and events into replies.

No work happens here: uploads go into the queue (daemon/jobs/queue.py), the executor runs them, and
Watch streams the job's event log. Every error becomes the gRPC status its code names
(pipeline.errors.ErrorCode), with the Dermis error code in the trailing metadata ``dermis-error-code``
and the error's own sentence as the details, so clients can both branch on it and show it unchanged.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, NoReturn

import grpc
import torch

import pipeline
from pipeline import DermisError
from proto import bulk
from proto.dermis.v1 import dermis_pb2 as pb
from proto.dermis.v1 import dermis_pb2_grpc as pb_grpc
from proto.events import TERMINAL, EventKind

from ..errors import ResultExpired, SharedMemoryUnavailable, UploadStalled
from ..jobs.executor import Executor
from ..jobs.queue import Job, JobQueue
from ..jobs.residency import Residency
from . import callers, faces, info, models, upload, wire
from .shm import SharedMemoryDir

log = logging.getLogger("dermis.daemon")

ERROR_CODE_KEY = "dermis-error-code"
WATCH_POLL_S = 1.0  # how often a quiet Watch checks that its client is still there
MAX_DETAILS = 4000  # characters of an error sentence sent back (status details travel in a header)


@dataclass(frozen=True)
class CallLimits:
    """Long calls each kind may hold at once, and how long an upload may stall (start.ServerConfig)."""

    watches: int = 40  # open Watch streams (each holds a server thread)
    uploads: int = 16  # Submit streams receiving at once
    stall_s: float = upload.STALL_S


def status_for(err: DermisError) -> grpc.StatusCode:
    """The gRPC status of an error: its code's canonical status (pipeline.errors.ErrorCode)."""
    return grpc.StatusCode[err.code.status]


def _details(err: DermisError) -> str:
    text = str(err)
    return text if len(text) <= MAX_DETAILS else text[:MAX_DETAILS - 1] + "…"


def abort(context: grpc.ServicerContext, err: DermisError) -> NoReturn:
    """End the call with the error's status, sentence and code (raises, as context.abort does)."""
    context.set_trailing_metadata(((ERROR_CODE_KEY, err.code.value),))
    context.abort(status_for(err), _details(err))
    raise AssertionError("grpc's context.abort always raises")


def end_call(context: Any, err: DermisError) -> None:
    """End a call from another thread (a stalled upload) with the error's status and sentence.

    grpc's public API can only cancel, and the client then reads a bare CANCELLED; the call under the
    context can cancel with a status, which is used where this grpc has it."""
    call = getattr(getattr(context, "_rpc_event", None), "call", None)
    try:
        call.cancel(status_for(err).value[0], _details(err))  # type: ignore[union-attr]
    except Exception:
        context.cancel()


class DermisServicer(pb_grpc.DermisServicer):
    def __init__(
        self,
        queue: JobQueue,
        executor: Executor | Any,  # or daemon.cluster.executor.ClusterExecutor (`dermis serve --ray`)
        residency: Residency,
        config: pipeline.Config,
        device: tuple[torch.device, torch.dtype],
        *,
        max_upload_bytes: int = 2 << 30,
        watch: Any = None,  # daemon.watch.service.WatchService, when folders are configured
        limits: CallLimits | None = None,
        shared_memory: SharedMemoryDir | None = None,
        fetcher: Any = None,  # daemon.jobs.fetch.ModelFetcher: FetchModels jobs
    ) -> None:
        self.watch = watch
        self.fetcher = fetcher
        self.queue = queue
        self.executor = executor
        self.residency = residency
        self.config = config
        self.device = device
        self.limits = limits or CallLimits()
        self.uploads = upload.UploadBudget(max_upload_bytes)
        self.upload_slots = callers.Slots("uploads", self.limits.uploads)
        self.watch_slots = callers.Slots("Watch streams", self.limits.watches)
        self.stalls = upload.StallWatch(self.limits.stall_s)
        self.shm = shared_memory
        self.refusals = callers.Throttled(log)

    def Submit(self, request_iterator: Iterator[Any], context: grpc.ServicerContext) -> Any:
        try:
            caller = callers.caller_of(context)
            with self.upload_slots.hold():
                return self._submit(request_iterator, context, caller)
        except DermisError as e:
            self.refusals.log(logging.INFO, "submit", "refused a job from %s: %s", context.peer(), e)
            abort(context, e)

    def _submit(self, request_iterator: Iterator[Any], context: grpc.ServicerContext,
                caller: callers.Caller) -> Any:
        stall = self.stalls.track(lambda: end_call(context, UploadStalled(
            f"the upload sent nothing for {self.stalls.stall_s:g} s; the daemon dropped it. Send the "
            "chunks without pausing (or try again).")))
        messages = upload.touching(request_iterator, stall)
        try:
            first = next(messages, None)
            if first is None or isinstance(first, bulk.RawChunk) or first.WhichOneof("part") != "header":
                raise upload.BadUpload("a job upload starts with a JobHeader message.")
            header = first.header
            job_id = header.job_id or uuid.uuid4().hex
            upload.check_job_id(job_id)
            existing = self.queue.known(job_id, wire.fingerprint(header), caller.client_id)
            if existing is not None:  # an idempotent retry: do not take the pixels again
                return pb.SubmitReply(job_id=job_id, position=max(existing.position, 0), duplicate=True)
            layout = upload.check_layout(header, self.config)
            plan = wire.plan(header, layout, self.config)
            nbytes = layout.nbytes + (layout.width * layout.height if header.has_mask else 0)
            self.queue.check_capacity(nbytes)
            with self.uploads.reserve(nbytes):
                if header.shared_memory_id:
                    image_buf, mask_buf = self._take_shared(header, layout, messages)
                else:
                    image_buf, mask_buf = upload.receive(header, layout, messages)
            spec = wire.job_spec(header, job_id, layout, plan, image_buf, mask_buf,
                                 self.shm.result_file if self.shm is not None else None)
            spec.owner = caller.client_id
            job, duplicate = self.queue.submit(spec)
        except grpc.RpcError:  # the client went away mid-upload, or the stall watch ended the call
            why = f"sent nothing for {self.stalls.stall_s:g} s" if stall.fired else "was cancelled by the client"
            log.info("an upload from %s %s; nothing was queued", caller, why)
            return pb.SubmitReply()  # nobody reads it: the call is over
        except DermisError:
            if not context.is_active():  # the stream ended short because the client cancelled
                log.info("an upload from %s was cancelled by the client; nothing was queued", caller)
                return pb.SubmitReply()
            raise
        except Exception:  # a bug must cost this request, never the daemon
            log.exception("Submit failed")
            context.abort(grpc.StatusCode.INTERNAL, "internal error while taking the job; the daemon's log "
                          "has the details.")
        finally:
            self.stalls.untrack(stall)
        log.info("queued job %s (%s, %s, %dx%d) from %s (%s)", job.id, plan.recipe.preset,
                 job.priority.name.lower(), layout.width, layout.height, header.client_name[:64] or "?", caller)
        return pb.SubmitReply(job_id=job.id, position=max(job.position, 0), duplicate=duplicate)

    def _take_shared(self, header: Any, layout: upload.PixelLayout, messages: Iterator[Any]) -> tuple[Any, Any]:
        if self.shm is None:
            raise SharedMemoryUnavailable("this daemon offers no shared-memory uploads; send the pixels as chunks.")
        bufs = self.shm.take_upload(header, layout)
        if next(messages, None) is not None:
            raise upload.BadUpload("a shared-memory upload is the header alone; chunks came after it.")
        return bufs

    def Watch(self, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        try:
            caller = callers.caller_of(context)
            upload.check_job_id(request.job_id)
            job = self.queue.get(request.job_id, caller.scope)
            with self.watch_slots.hold():
                yield from self._watch(job, request, context)
        except DermisError as e:
            abort(context, e)

    def _watch(self, job: Job, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        shared = self.shm if request.result_in_shared_memory else None
        seq = min(request.after_seq, job.last_seq)  # a seq from the future means "what comes next"
        while context.is_active():
            events = job.events_after(seq, timeout=WATCH_POLL_S)
            if not events:
                final = job.final_event()
                if final is None:
                    continue
                events = [final]  # the client saw everything already: the stream still ends
            for ev in events:
                if ev.kind is EventKind.done:
                    yield from self._done(job, ev.seq, shared)
                    return
                yield wire.event_pb(ev)
                seq = ev.seq
                if ev.kind in TERMINAL:
                    return

    def _done(self, job: Job, seq: int, shared: SharedMemoryDir | None) -> Iterator[Any]:
        result = job.result
        if result is None:
            err = ResultExpired(f"the result of job {job.id} is no longer held (results are kept for a "
                                "limited time); run the job again.")
            yield pb.JobEvent(job_id=job.id, seq=seq, error=pb.Error(code=err.code.value, message=str(err)))
            return
        shm_id = ""
        if shared is not None and isinstance(result, wire.RawResult):  # a download's result has no pixels
            try:
                shm_id = shared.publish(result.pixels, result.file)
            except OSError as e:  # a full memory file system: stream it
                log.info("result of job %s streamed, not shared: %s", job.id, e)
        yield from wire.result_events(job.id, seq, result, shared_memory_id=shm_id)

    def Cancel(self, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            caller = callers.caller_of(context)
            upload.check_job_id(request.job_id)
            state = self.queue.cancel(request.job_id, owner=caller.scope)
        except DermisError as e:
            abort(context, e)
        log.info("cancel of job %s (%s) from %s", request.job_id, state.value, caller)
        return pb.CancelReply(state=wire.STATE_PB[state])

    def GetServerInfo(self, request: Any, context: grpc.ServicerContext) -> Any:
        reply = info.build(self.config, self.device, self.residency, self.queue, self.queue.max_queued)
        workers = getattr(self.executor, "workers", None)  # a ClusterExecutor (`dermis serve --ray`)
        if workers is not None:
            reply.workers.extend(info.worker_pb(slot, state) for slot, state in workers())
        if self.shm is not None:
            reply.shared_memory_dir = str(self.shm.path)
            reply.capabilities.append("shared-memory")
        return reply

    def ListJobs(self, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            caller = callers.caller_of(context)
        except DermisError as e:
            abort(context, e)
        jobs = self.queue.jobs(include_finished=request.include_finished, owner=caller.scope)
        folders = wire.folders_pb(self.watch.counts()) if self.watch is not None else []
        return pb.ListJobsReply(jobs=[wire.job_info(j) for j in jobs],
                                counts=wire.counts_pb(self.queue.counts()), folders=folders)

    def FetchModels(self, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            caller = callers.caller_of(context)
            reply = models.fetch_models(request, self.fetcher, caller.client_id)
        except DermisError as e:
            abort(context, e)
        if reply.job_id:
            log.info("fetch job %s (%s) from %s", reply.job_id, request.preset or ",".join(request.roles),
                     request.client_name or context.peer())
        return reply

    def FindFaces(self, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return faces.find_faces(request)
        except DermisError as e:
            abort(context, e)

    def UnloadModels(self, request: Any, context: grpc.ServicerContext) -> Any:
        count, freed = self.residency.unload(request.key)
        log.info("unloaded %d model(s), %d bytes, on request of %s", count, freed, context.peer())
        return pb.UnloadModelsReply(unloaded=count, freed_bytes=freed)


def add_to_server(servicer: DermisServicer, server: grpc.Server) -> None:
    """Register the service like the generated add_DermisServicer_to_server, except that Submit and
    Watch use proto/bulk.py's copy-saving (de)serializers for their pixel chunks."""
    service = pb.DESCRIPTOR.services_by_name["Dermis"]

    def unary(name: str, request: Any, reply: Any) -> Any:
        return grpc.unary_unary_rpc_method_handler(getattr(servicer, name), request.FromString,
                                                   reply.SerializeToString)

    handlers = {
        "Submit": grpc.stream_unary_rpc_method_handler(
            servicer.Submit, lambda raw: bulk.decode_submit(raw, pb.SubmitRequest),
            pb.SubmitReply.SerializeToString),
        "Watch": grpc.unary_stream_rpc_method_handler(servicer.Watch, pb.WatchRequest.FromString,
                                                      bulk.serialize),
        "Cancel": unary("Cancel", pb.CancelRequest, pb.CancelReply),
        "GetServerInfo": unary("GetServerInfo", pb.GetServerInfoRequest, pb.ServerInfo),
        "ListJobs": unary("ListJobs", pb.ListJobsRequest, pb.ListJobsReply),
        "UnloadModels": unary("UnloadModels", pb.UnloadModelsRequest, pb.UnloadModelsReply),
        "FetchModels": unary("FetchModels", pb.FetchModelsRequest, pb.FetchModelsReply),
        "FindFaces": unary("FindFaces", pb.FindFacesRequest, pb.FindFacesReply),
    }
    assert set(handlers) == {m.name for m in service.methods}, "a new rpc needs a handler here"
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service.full_name, handlers),))
