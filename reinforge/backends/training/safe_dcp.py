"""Reading torch.distributed.checkpoint (DCP) folders without running code from them.

DCP stores its `.metadata` as a plain pickle and loads non-tensor entries (optimizer
hyper-parameters, ...) with `torch.load(weights_only=False)`; both would run whatever a crafted
file asks for. `SafeFileSystemReader` unpickles `.metadata` with an allow-list of the DCP
metadata and planner data classes (plus torch dtypes, `torch.Size` and paths), and `SafeLoadPlanner` loads the
non-tensor entries with `weights_only=True`. Tensor shards DCP already reads with
`weights_only=True`. Resume and `reinforge convert` also check the checkpoint's manifest first
(`reinforge.core.checkpoint_manifest`); this is the second wall.
"""

from __future__ import annotations

import io
import pathlib
import pickle
from typing import Any

import torch
from torch.distributed.checkpoint import FileSystemReader
from torch.distributed.checkpoint import metadata as dcp_metadata
from torch.distributed.checkpoint import planner as dcp_planner
from torch.distributed.checkpoint._traverse import set_element
from torch.distributed.checkpoint.default_planner import DefaultLoadPlanner
from torch.distributed.checkpoint.planner import ReadItem

from reinforge.core.errors import ReinforgeError

_PATH_CLASSES = {"PosixPath", "WindowsPath", "PurePosixPath", "PureWindowsPath", "Path"}
# Megatron's torch_dist format also stores its save plans (planner dataclasses) in the metadata.
_DATA_MODULES = {dcp_metadata.__name__: dcp_metadata, dcp_planner.__name__: dcp_planner}


class _MetadataUnpickler(pickle.Unpickler):
    """Only the classes a DCP `.metadata` is made of; anything else (os.system, eval, ...) is refused."""

    def find_class(self, module: str, name: str) -> Any:
        if module in _DATA_MODULES:
            # Only the plain data classes (dataclasses, enums) these modules define; never a function.
            obj = getattr(_DATA_MODULES[module], name, None)
            if isinstance(obj, type) and obj.__module__ == module:
                return obj
        elif module == "torch.distributed.checkpoint.filesystem" and name == "_StorageInfo":
            from torch.distributed.checkpoint.filesystem import _StorageInfo

            return _StorageInfo
        elif module == "torch" and name == "Size":
            return torch.Size
        elif module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        elif module == "torch.serialization" and name == "_get_layout":
            from torch.serialization import _get_layout

            return _get_layout
        elif module == "pathlib" and name in _PATH_CLASSES:
            return getattr(pathlib, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a checkpoint's .metadata")


def read_dcp_metadata(data: bytes, where: str) -> dcp_metadata.Metadata:
    """Unpickle DCP metadata bytes with the allow-list; a refusal is a user-facing error naming `where`."""
    try:
        metadata = _MetadataUnpickler(io.BytesIO(data)).load()
    except (pickle.UnpicklingError, EOFError, AttributeError, ValueError, TypeError, IndexError, KeyError) as exc:
        raise ReinforgeError(
            f"{where} is not a checkpoint's metadata that reinforge can read safely ({type(exc).__name__}: {exc}); "
            "it was not loaded. Use a checkpoint written by reinforge, or re-create this one"
        ) from None
    if not isinstance(metadata, dcp_metadata.Metadata):
        raise ReinforgeError(f"{where} holds a {type(metadata).__name__}, not a checkpoint's metadata; it was not loaded")
    return metadata


class SafeFileSystemReader(FileSystemReader):
    """`FileSystemReader` whose `.metadata` goes through the allow-list unpickler."""

    def read_metadata(self, *args: Any, **kwargs: Any) -> dcp_metadata.Metadata:
        path = self._get_metadata_path(kwargs.get("rank"))
        with self.fs.create_stream(path, "rb") as stream:
            metadata = read_dcp_metadata(stream.read(), str(path))
        if getattr(metadata, "storage_meta", None) is None:
            metadata.storage_meta = dcp_metadata.StorageMeta()
        metadata.storage_meta.load_id = self.load_id
        return metadata


class SafeLoadPlanner(DefaultLoadPlanner):
    """`DefaultLoadPlanner` that loads non-tensor entries with `weights_only=True`."""

    def load_bytes(self, read_item: ReadItem, value: io.BytesIO) -> None:
        try:
            loaded = torch.load(value, weights_only=True)
        except pickle.UnpicklingError as exc:
            raise ReinforgeError(
                f"the checkpoint entry '{read_item.dest_index.fqn}' holds objects reinforge will not unpickle ({exc}); "
                "it was not loaded"
            ) from None
        if self.flatten_state_dict:
            set_element(self.original_state_dict, self.mappings[read_item.dest_index.fqn], loaded)
        else:
            self.state_dict[read_item.dest_index.fqn] = loaded
