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
from typing import Any, NoReturn

import grpc
import torch

import pipeline
from pipeline import DermisError
from proto import bulk
from proto.dermis.v1 import dermis_pb2 as pb
from proto.dermis.v1 import dermis_pb2_grpc as pb_grpc
from proto.events import TERMINAL, EventKind

from ..errors import ResultExpired
from ..jobs.executor import Executor
from ..jobs.queue import JobQueue
from ..jobs.residency import Residency
from . import faces, info, models, upload, wire

log = logging.getLogger("dermis.daemon")

ERROR_CODE_KEY = "dermis-error-code"
WATCH_POLL_S = 1.0  # how often a quiet Watch checks that its client is still there


def status_for(err: DermisError) -> grpc.StatusCode:
    """The gRPC status of an error: its code's canonical status (pipeline.errors.ErrorCode)."""
    return grpc.StatusCode[err.code.status]


def abort(context: grpc.ServicerContext, err: DermisError) -> NoReturn:
    """End the call with the error's status, sentence and code (raises, as context.abort does)."""
    context.set_trailing_metadata(((ERROR_CODE_KEY, err.code.value),))
    context.abort(status_for(err), str(err))
    raise AssertionError("grpc's context.abort always raises")


class DermisServicer(pb_grpc.DermisServicer):
    def __init__(
        self,
        queue: JobQueue,
        executor: Executor,
        residency: Residency,
        config: pipeline.Config,
        device: tuple[torch.device, torch.dtype],
        *,
        max_upload_bytes: int = 2 << 30,
        watch: Any = None,  # daemon.watch.service.WatchService, when folders are configured
        fetcher: Any = None,  # daemon.jobs.fetch.ModelFetcher: FetchModels jobs
    ) -> None:
        self.watch = watch
        self.fetcher = fetcher
        self.queue = queue
        self.executor = executor
        self.residency = residency
        self.config = config
        self.device = device
        self.uploads = upload.UploadBudget(max_upload_bytes)

    def Submit(self, request_iterator: Iterator[Any], context: grpc.ServicerContext) -> Any:
        first = next(request_iterator, None)
        if first is None or isinstance(first, bulk.RawChunk) or first.WhichOneof("part") != "header":
            abort(context, upload.BadUpload("a job upload starts with a JobHeader message."))
        header = first.header
        try:
            job_id = header.job_id or uuid.uuid4().hex
            upload.check_job_id(job_id)
            existing = self.queue.known(job_id, wire.fingerprint(header))
            if existing is not None:  # an idempotent retry: do not take the pixels again
                return pb.SubmitReply(job_id=job_id, position=max(existing.position, 0), duplicate=True)
            layout = upload.check_layout(header, self.config)
            plan = wire.plan(header, layout, self.config)
            nbytes = layout.nbytes + (layout.width * layout.height if header.has_mask else 0)
            self.queue.check_capacity(nbytes)
            with self.uploads.reserve(nbytes):
                image_buf, mask_buf = upload.receive(header, layout, request_iterator)
            job, duplicate = self.queue.submit(wire.job_spec(header, job_id, layout, plan, image_buf, mask_buf))
        except DermisError as e:
            log.info("refused a job from %s: %s", context.peer(), e)
            abort(context, e)
        except Exception:  # a bug must cost this request, never the daemon
            log.exception("Submit failed")
            context.abort(grpc.StatusCode.INTERNAL, "internal error while taking the job; the daemon's log "
                          "has the details.")
        log.info("queued job %s (%s, %s, %dx%d) from %s", job.id, plan.recipe.preset,
                 job.priority.name.lower(), layout.width, layout.height, header.client_name or context.peer())
        return pb.SubmitReply(job_id=job.id, position=max(job.position, 0), duplicate=duplicate)

    def Watch(self, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        try:
            job = self.queue.get(request.job_id)
        except DermisError as e:
            abort(context, e)
        seq = request.after_seq
        while context.is_active():
            for ev in job.events_after(seq, timeout=WATCH_POLL_S):
                if ev.kind is EventKind.done:
                    result = job.result
                    if result is None:
                        err = ResultExpired(f"the result of job {job.id} is no longer held (results are "
                                            "kept for a limited time); run the job again.")
                        yield pb.JobEvent(job_id=job.id, seq=ev.seq,
                                          error=pb.Error(code=err.code.value, message=str(err)))
                    else:
                        yield from wire.result_events(job.id, ev.seq, result)
                    return
                yield wire.event_pb(ev)
                seq = ev.seq
                if ev.kind in TERMINAL:
                    return

    def Cancel(self, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            state = self.queue.cancel(request.job_id)
        except DermisError as e:
            abort(context, e)
        log.info("cancel of job %s (%s) from %s", request.job_id, state.value, context.peer())
        return pb.CancelReply(state=wire.STATE_PB[state])

    def GetServerInfo(self, request: Any, context: grpc.ServicerContext) -> Any:
        return info.build(self.config, self.device, self.residency, self.queue, self.queue.max_queued)

    def ListJobs(self, request: Any, context: grpc.ServicerContext) -> Any:
        jobs = self.queue.jobs(include_finished=request.include_finished)
        folders = wire.folders_pb(self.watch.counts()) if self.watch is not None else []
        return pb.ListJobsReply(jobs=[wire.job_info(j) for j in jobs],
                                counts=wire.counts_pb(self.queue.counts()), folders=folders)

    def FetchModels(self, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            reply = models.fetch_models(request, self.fetcher)
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
