"""FetchModels and the catalogue in GetServerInfo: translations between dermis.v1 and pipeline.fetch.

The servicer hands a FetchModelsRequest here; a dry run answers from the plan (no network, no job),
otherwise a fetch job is adopted by the queue and run by ``daemon.jobs.fetch.ModelFetcher``.
"""

from __future__ import annotations

import hashlib
from typing import Any

from pipeline import InvalidParameter, fetch
from pipeline.fetch import licences
from pipeline.models.catalogue import CatalogueFile, catalogue
from proto.dermis.v1 import dermis_pb2 as pb

from ..jobs.fetch import FetchSpec, ModelFetcher
from .upload import check_job_id


def catalogue_pb() -> list[Any]:
    """Every catalogue file, for ServerInfo.catalogue."""
    return [model_file(f) for f in catalogue().files]


def model_file(f: CatalogueFile, *, action: str = "", path: str = "", note: str = "") -> Any:
    size = f.size_hint or 0
    return pb.ModelFile(role=f.role, variant=f.variant, filename=f.filename, size=size,
                        size_exact=f.size is not None, licence=f.licence, non_commercial=f.non_commercial,
                        gated=f.gated, source=f.source, page=f.page_url, path=path, action=action, note=note,
                        supported=f.supported, is_default=f.is_default)


def fetch_models(request: Any, fetcher: ModelFetcher | None, owner: str) -> Any:
    """The FetchModels reply: the plan, and the job id unless it is a dry run; the job is ``owner``'s
    (a client id, daemon/server/callers.py)."""
    if fetcher is None:
        raise InvalidParameter("this daemon does not download models.")
    if request.job_id:
        check_job_id(request.job_id)
    spec = FetchSpec(preset=request.preset, roles=tuple(request.roles), variant=request.variant,
                     accept_licences=request.accept_licences, client_name=request.client_name[:64],
                     fingerprint=hashlib.sha256(request.SerializeToString(deterministic=True)).hexdigest(),
                     owner=owner,
                     **({"job_id": request.job_id} if request.job_id else {}))
    rows, plan = fetcher.plan(spec)
    files = []
    for row in rows:
        if not row.enabled:
            continue
        if row.found is not None:
            entry = row.entry
            files.append(model_file(entry, action="found", path=str(row.found)) if entry is not None else
                         pb.ModelFile(role=row.role, action="found", path=str(row.found)))
    files += [model_file(i.entry, action="download", path=str(i.dest)) for i in plan.downloads]
    files += [model_file(m.entry, action="manual", note=m.reason) if m.entry is not None else
              pb.ModelFile(role=m.role, action="manual", note=m.reason) for m in plan.manual]
    reply = pb.FetchModelsReply(
        files=files, download_bytes=plan.approx_bytes, free_bytes=fetch.free_bytes(plan.root),
        folder=str(plan.root),
        licences_to_accept=[f"{e.filename} ({e.role}): {e.licence}; {e.page_url}"
                            for e in licences.unaccepted(i.entry for i in plan.downloads)])
    if not request.dry_run:
        job, _duplicate = fetcher.submit(spec)
        reply.job_id = job.id
    return reply
