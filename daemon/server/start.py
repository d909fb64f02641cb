"""Build, bind and start the daemon: gRPC server, servicer, queue, executor, health and reflection.

``start_server(config)`` returns the running server and a ``Daemon`` handle (address, token, queue,
``stop()``), like grpc's ``_running_server`` example: `dermis serve` waits on it, tests start one on a
temporary socket or 127.0.0.1:0, the benchmark in-process.

Binding: a Unix socket by default on Linux/macOS (file permissions + token), 127.0.0.1 on Windows.
Anything that is not loopback needs ``allow_remote`` and is logged as a warning: the token is the only
protection then and travels unencrypted.
"""

from __future__ import annotations

import logging
import os
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

import pipeline
from pipeline import InvalidParameter
from pipeline.device import select_device
from proto.dermis.v1 import dermis_pb2 as pb

from ..cluster.settings import ClusterSettings
from ..jobs.executor import Executor
from ..jobs.fetch import ModelFetcher
from ..jobs.queue import JobQueue
from ..jobs.residency import Residency, default_budget
from ..watch.service import WatchService
from . import auth, runtime
from .info import device_text
from .servicer import CallLimits, DermisServicer, add_to_server
from .shm import SharedMemoryDir
from .upload import STALL_S

if TYPE_CHECKING:  # Ray is imported only when a cluster is configured (daemon/cluster/__init__.py)
    from ..cluster.executor import ClusterExecutor

log = logging.getLogger("dermis.daemon")

SERVICE = pb.DESCRIPTOR.services_by_name["Dermis"].full_name  # "dermis.v1.Dermis"
MAX_MESSAGE_BYTES = 16 << 20  # > one 1 MiB chunk plus header and ICC profile; images always stream


@dataclass
class ServerConfig:
    pipeline: pipeline.Config = field(default_factory=pipeline.Config)
    listen: str | None = None  # None = a Unix socket (Linux/macOS) or 127.0.0.1:50151 (Windows)
    allow_remote: bool = False  # listen on a non-loopback address (warned: token only, no TLS)
    token: str | None = None  # None = a new random token
    runtime_file: Path | None = None  # publish address + token file here (None = publish nothing)
    device: str | None = None  # None = the config's device (auto)
    vram_budget: int | None = None  # bytes for resident models; None = the card minus a reserve
    max_queue: int = 32  # jobs waiting at once
    max_queue_bytes: int = 8 << 30  # bytes of waiting images
    max_upload_bytes: int = 2 << 30  # bytes of uploads in flight at once
    max_workers: int = 72  # gRPC handler threads (every open Watch or upload holds one)
    max_watches: int = 40  # open Watch streams; the threads left over serve the short calls (Cancel...)
    max_uploads: int = 16  # Submit streams receiving at once (more: RESOURCE_EXHAUSTED, retried by clients)
    max_rpcs: int = 100  # calls at once, waiting for a thread included; more get RESOURCE_EXHAUSTED
    upload_stall_s: float = STALL_S  # s an upload may send nothing before it is dropped
    shared_memory: bool = True  # offer shared-memory transfers to clients on this machine (Linux)
    result_ttl: float = 900.0  # s a finished job's result stays fetchable
    cluster: ClusterSettings | None = None  # `--ray`: jobs run on a Ray cluster's workers (docs/cluster.md)
    preload: tuple[str, ...] = ()  # presets every cluster worker must have the weights of, checked at start
    shutdown_grace: float = 30.0  # s the running job gets to finish on stop()


@dataclass
class Daemon:
    server: grpc.Server
    address: str  # what clients dial: unix:/path or 127.0.0.1:PORT
    token: str
    device: str  # e.g. "CPU (cpu, float32)"
    queue: JobQueue
    executor: Executor | ClusterExecutor
    residency: Residency
    health: health.HealthServicer
    config: ServerConfig
    token_file: Path | None = None
    lock: runtime.DaemonLock | None = None
    socket_path: Path | None = None
    warnings: list[str] = field(default_factory=list)
    watch: WatchService | None = None  # the config's [[watch]] folders
    shared_memory: SharedMemoryDir | None = None
    fetcher: ModelFetcher | None = None  # FetchModels jobs (model downloads)
    _stopped: bool = False

    def stop(self, grace: float | None = None) -> None:
        """Graceful shutdown: health NOT_SERVING, waiting jobs cancelled, the running job finishes
        within ``grace`` s (else it is cancelled), watchers get their last event, files removed."""
        if self._stopped:
            return
        self._stopped = True
        grace = self.config.shutdown_grace if grace is None else grace
        self.health.enter_graceful_shutdown()
        if self.watch is not None:  # first: a folder job is cancelled and stays claimed for next time
            self.watch.stop()
        if self.fetcher is not None:  # a download stops at once; its partial file is resumed next time
            self.fetcher.stop()
        self.executor.stop(grace)
        self.server.stop(grace=3.0).wait()  # open Watch streams get their terminal events first
        if self.config.runtime_file is not None:
            runtime.remove_runtime(self.config.runtime_file)
            if self.token_file is not None:
                self.token_file.unlink(missing_ok=True)
        if self.socket_path is not None:
            self.socket_path.unlink(missing_ok=True)
        if self.shared_memory is not None:
            self.shared_memory.close()
        if self.lock is not None:
            self.lock.release()
        log.info("daemon stopped")


def start_server(config: ServerConfig) -> tuple[grpc.Server, Daemon]:
    """Bind, start and return the server and its Daemon handle (raises InvalidParameter when it can't)."""
    listen = runtime.parse_listen(config.listen or runtime.default_listen())
    warnings = []
    if not listen.loopback:
        if not config.allow_remote:
            raise InvalidParameter(
                f"refusing to listen on {listen.target}: that is reachable from other machines. Use a Unix "
                "socket or 127.0.0.1, or pass --allow-remote if you really mean it.")
        warnings.append(
            f"WARNING: listening on {listen.target}, reachable from other machines. Only the token protects "
            "the daemon, and it travels unencrypted; use this on a trusted network only.")
    device = select_device(config.device or config.pipeline.device)
    if config.max_watches + config.max_uploads >= config.max_workers:
        raise InvalidParameter(f"max_watches + max_uploads ({config.max_watches} + {config.max_uploads}) must "
                               f"leave some of the {config.max_workers} server threads for other calls.")
    lock = None
    shared_memory = None
    if config.runtime_file is not None:
        lock = runtime.DaemonLock(config.runtime_file)
        lock.acquire()
    try:
        if listen.socket_path is not None:
            runtime.prepare_socket(listen.socket_path)
        residency = Residency(config.vram_budget if config.vram_budget is not None else default_budget(device[0]))
        queue = JobQueue(max_queued=config.max_queue, max_queued_bytes=config.max_queue_bytes,
                         result_ttl=config.result_ttl)
        local = Executor(queue, residency, config=config.pipeline, device=str(device[0]))
        executor = local if config.cluster is None else _cluster_executor(config, config.cluster, queue, local,
                                                                          warnings)
        fetcher = ModelFetcher(queue, config.pipeline)
        # bad [[watch]] tables: refuse to start; on a cluster, each folder keeps one job per live worker in flight
        watch = WatchService.from_config(config.pipeline, queue, capacity=lambda: executor.capacity)
        token = config.token or auth.new_token()
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=config.max_workers, thread_name_prefix="dermis-rpc"),
            interceptors=[auth.TokenInterceptor(token)],
            options=[
                ("grpc.so_reuseport", 0),  # a second daemon must fail to bind, not share the port
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                ("grpc.keepalive_permit_without_calls", 1),  # clients ping every 30 s
                ("grpc.http2.min_recv_ping_interval_without_data_ms", 10_000),
                ("grpc.http2.max_ping_strikes", 0),
            ],
            maximum_concurrent_rpcs=config.max_rpcs,
        )
        shared_memory = SharedMemoryDir.create() if config.shared_memory else None
        servicer = DermisServicer(
            queue, executor, residency, config.pipeline, device, max_upload_bytes=config.max_upload_bytes,
            watch=watch, fetcher=fetcher, shared_memory=shared_memory,
            limits=CallLimits(watches=config.max_watches, uploads=config.max_uploads,
                              stall_s=config.upload_stall_s))
        add_to_server(servicer, server)
        health_servicer = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        reflection.enable_server_reflection(
            (SERVICE, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME),
            server)
        port = _bind(server, listen)
        if listen.socket_path is not None:
            os.chmod(listen.socket_path, 0o600)
        server.start()
        executor.start()
        fetcher.start()
        watch.start()
        for name in ("", SERVICE):
            health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
        address = runtime.client_address(listen, port)
        token_file = None
        if config.runtime_file is not None:
            token_file = config.runtime_file.with_name("token")
            auth.write_private(token_file, token + "\n")
            runtime.write_runtime(config.runtime_file, address, token_file, pipeline.__version__)
    except BaseException:
        if shared_memory is not None:
            shared_memory.close()
        if lock is not None:
            lock.release()
        raise
    for w in warnings:
        log.warning(w)
    log.info("serving %s on %s (%s)", SERVICE, address, device[0])
    daemon = Daemon(server, address, token, device_text(*device)[0], queue, executor, residency,
                    health_servicer, config,
                    token_file=token_file, lock=lock, socket_path=listen.socket_path, warnings=warnings,
                    watch=watch, fetcher=fetcher, shared_memory=shared_memory)
    return server, daemon


def _cluster_executor(config: ServerConfig, settings: ClusterSettings, queue: JobQueue,
                      local: Executor, warnings: list[str]) -> ClusterExecutor | Executor:
    """Connect to the Ray cluster and start its workers (the only place the daemon imports Ray). A cluster
    that cannot be reached stops the start, or with ``local_fallback`` leaves every job to ``local``."""
    from ..cluster.executor import connect
    from ..cluster.pool import ClusterUnavailable

    try:
        return connect(settings, queue, config.pipeline, [pipeline.build(name) for name in config.preload],
                       device=config.device, budget=config.vram_budget,
                       fallback=local if settings.local_fallback else None)
    except ClusterUnavailable as e:
        if not settings.local_fallback:
            raise
        warnings.append(f"WARNING: {e} [cluster] local_fallback is set, so this daemon runs every job on this "
                        "machine; restart it once the cluster is up.")
        return local


def _bind(server: grpc.Server, listen: runtime.ListenAddress) -> int:
    try:
        port = server.add_insecure_port(listen.target)
    except RuntimeError as e:  # newer grpcio raises where older ones returned 0
        raise InvalidParameter(f"cannot listen on {listen.target} ({e}); is another program using it?") from None
    if port == 0:
        raise InvalidParameter(f"cannot listen on {listen.target}; is another program using it?")
    return port
