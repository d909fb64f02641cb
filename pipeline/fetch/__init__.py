"""Getting model files: what a preset needs and has (``status``), what to download (``plan``), and
the download itself (``fetch``), resumable and checked, into a ComfyUI-layout models folder.

Files and their sources come from the weight catalogue (``pipeline/models/catalogue.toml``); Hub
downloads go through huggingface_hub (token, endpoint, offline mode are its settings).
"""

from .plan import FetchItem, FetchPlan, ManualItem, RoleStatus, download_root, plan, status
from .run import LARGE_BYTES, Fetched, fetch, free_bytes
from .sources import Remote, hub_endpoint, locate

__all__ = ["LARGE_BYTES", "FetchItem", "FetchPlan", "Fetched", "ManualItem", "Remote", "RoleStatus", "download_root", "fetch",
           "free_bytes", "hub_endpoint", "locate", "plan", "status"]
