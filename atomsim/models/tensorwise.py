"""Saved weights read into a module tensor by tensor: a load holds little beyond what it keeps.

Read whole (`torch.load`), a torch-dynamic-int8 state dict is held in full while every Linear
packs its own copy of its weight: the paper decoder's load held its 2.3 GB file and the packed
copies at once. Here the module is built on the meta device (int8 Linears as 1x1 placeholders:
`quant.swap_dynamic_structure`), the saved entries are grouped by the module that owns them (the
key's path without its last name), and each group is read from the file and handed to that
module's `_load_from_state_dict` by assignment (as `load_state_dict(..., assign=True)` does, one
module at a time), then dropped before the next group is read. A packed Linear's int8 weight is
so freed before the next one is read; float tensors (and torchao's int8 tensors) become the
module's own. The load's temporaries are then about one Linear's int8 weight (measured:
docs/running.md, "Int8 loads").

Bytes come into process memory by pread(2), never through a mapping of the file: mapped pages
that were referenced stay on the kernel's active list under a RAM limit, unlike read pages
(docs/running.md).

The torch zip format (`torch.save`, the int8 backends' `model.pt`): its pickle is unpickled by
torch's weights-only unpickler, each storage allocated but not read (untouched memory is not
resident) and filled in place from its record's offset when the group holding it is loaded;
quantized storages in anonymous mappings of their own, so that each goes back to the system when
freed. Storages of at most `EAGER_BYTES` (scales, zero points, biases) are read at once, so
whatever the rebuild of a tensor reads from them is real.
"""
from __future__ import annotations

import io
import os
import sys
from collections import OrderedDict
from pathlib import Path

from ..procfs import malloc_trim

EAGER_BYTES = 1 << 16
TRIM_EVERY_BYTES = 16 << 20   # a heap trim after this many bytes read (load_groups)
_CHUNK = 1 << 30


class Mismatch(RuntimeError):
    """The file's tensors do not fit the module (shapes), as `load_state_dict` reports them."""


def groups(keys, modules: dict) -> list[tuple[str, list[str]]]:
    """The keys grouped by the module owning them (its name in `modules`; '' the root), in the
    order each owner first appears; keys of no module of `modules` are left out (strict=False)."""
    out: dict[str, list[str]] = {}
    for k in keys:
        owner = k.rpartition(".")[0]
        if owner in modules:
            out.setdefault(owner, []).append(k)
    return list(out.items())


def load_groups(net, keys, metadata, read) -> None:
    """Fill `net` group by group: `read(keys)` gives a group's {key: value} (real tensors), handed
    to its owner's `_load_from_state_dict` with assignment, then dropped. Raises Mismatch where
    `load_state_dict` raises (size mismatches); missing and unexpected keys are allowed.

    The heap is trimmed after every TRIM_EVERY_BYTES read: while a load runs on one lane, the
    other lanes' steps allocate and free their activations in the same heap (one malloc arena),
    between the blocks this load keeps, and without a trim those freed pages stay resident until
    the load ends (measured, small torch-dynamic-int8 decoder loaded while 4 encodes ran: 540 MB
    above the start at the load's end against 290 kept; trimmed as it goes, the run's peak no
    longer falls in the load)."""
    modules = dict(net.named_modules())
    errors: list[str] = []
    since_trim = 0
    for owner, ks in groups(keys, modules):
        part = read(ks)
        since_trim += sum(_nbytes(v) for v in part.values())
        local = dict((metadata or {}).get(owner, {}), assign_to_params_buffers=True)
        modules[owner]._load_from_state_dict(part, f"{owner}." if owner else "", local, True, [], [], errors)
        del part
        if since_trim >= TRIM_EVERY_BYTES:
            malloc_trim()
            since_trim = 0
        if errors:
            raise Mismatch(f"Error(s) in loading state_dict for {type(net).__name__}: {'; '.join(errors)}")


def _nbytes(value) -> int:
    """Bytes of a state dict value (a tensor, quantized ones too, or a tuple of them as a packed
    Linear saves its weight and bias; anything else: 0)."""
    if isinstance(value, (tuple, list)):
        return sum(map(_nbytes, value))
    try:
        return value.numel() * value.element_size()
    except (AttributeError, RuntimeError, NotImplementedError):
        return 0


def _anon_storage(nbytes: int):
    """A storage in an anonymous private mapping of its own: unmapped as soon as it is freed. An
    int8 weight is freed once packed; from the heap it would be kept by the allocator (free but
    resident) until a trim, and the load's temporaries would grow with every packed Linear."""
    import mmap

    import torch
    return torch.frombuffer(mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE), dtype=torch.uint8).untyped_storage()


def _is_subclass(t) -> bool:
    import torch
    return type(t) not in (torch.Tensor, torch.nn.Parameter) and hasattr(t, "__tensor_flatten__")


class _ZipState:
    """A torch zip file's state dict with its large storages allocated, not read; `fill` reads a
    value's storages in place."""

    def __init__(self, wfile: Path):
        import torch
        self.path = str(wfile)
        self.zip = torch._C.PyTorchFileReader(self.path)
        order = self.zip.get_record("byteorder") if self.zip.has_record("byteorder") else b"little"
        if order.decode() != sys.byteorder:
            raise ValueError(f"{wfile}: byte order {order!r} differs from this machine's")
        self.fd = os.open(self.path, os.O_RDONLY)
        self.storages: dict = {}        # key -> TypedStorage (so shared storages stay shared)
        self.pending: dict = {}         # data_ptr -> file offset of the storages not read yet
        try:
            from torch import _weights_only_unpickler as wou
            up = wou.Unpickler(io.BytesIO(self.zip.get_record("data.pkl")), encoding="utf-8")
            up.persistent_load = self._storage
            self.state = up.load()
        except BaseException:
            self.close()
            raise
        self.storages.clear()
        # the rebuild of each quantized tensor allocates a tensor of its size and drops it for the
        # file's storage: never written, but freed into the heap, which holds on to the pages its
        # bookkeeping touched (with huge pages, 2 MiB each: 13 MB after the paper video encoder's
        # 147 int8 weights), until trimmed
        malloc_trim()

    def _storage(self, pid):
        import torch
        _, storage_type, key, _location, numel = pid
        if key in self.storages:
            return self.storages[key]
        dtype = torch.uint8 if storage_type is torch.UntypedStorage else storage_type.dtype
        nbytes = numel * torch._utils._element_size(dtype)
        quantized = dtype in (torch.qint8, torch.quint8, torch.qint32, torch.quint4x2)
        st = _anon_storage(nbytes) if quantized and nbytes > EAGER_BYTES else torch.UntypedStorage(nbytes)
        name = f"data/{key}"
        if self.zip.get_record_size(name) != nbytes:
            raise ValueError(f"{self.path}: record {name} holds {self.zip.get_record_size(name)} bytes, "
                             f"its tensor {nbytes}")
        offset = self.zip.get_record_offset(name)
        if nbytes <= EAGER_BYTES:
            self._read(st, offset)
        else:
            self.pending[st.data_ptr()] = offset
        typed = torch.storage.TypedStorage(wrap_storage=st, dtype=dtype, _internal=True)
        self.storages[key] = typed
        return typed

    def _read(self, st, offset: int) -> None:
        import torch
        buf = memoryview(torch.empty(0, dtype=torch.uint8).set_(st).numpy()).cast("B")
        done = 0
        while done < len(buf):
            n = os.preadv(self.fd, [buf[done:done + _CHUNK]], offset + done)
            if n <= 0:
                raise EOFError(f"{self.path}: ends inside a tensor's record (at byte {offset + done})")
            done += n

    def fill(self, value):
        """Read every pending storage `value` (a tensor, or a tuple/list of them) refers to."""
        import torch
        if isinstance(value, (tuple, list)):
            for v in value:
                self.fill(v)
        elif isinstance(value, torch.Tensor) and _is_subclass(value):   # torchao's: its inner tensors
            names, _ = value.__tensor_flatten__()
            self.fill([getattr(value, n) for n in names])
        elif isinstance(value, torch.Tensor) and value.device.type == "cpu":
            st = value.untyped_storage()
            offset = self.pending.pop(st.data_ptr(), None)
            if offset is not None:
                self._read(st, offset)
        return value

    def take(self, keys) -> dict:
        """The entries of `keys`, read, and removed from the state (so that they are freed once
        their module has taken them)."""
        return {k: self.fill(self.state.pop(k)) for k in keys}

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def load_torch_zip(net, wfile: Path) -> None:
    """Fill `net` from a `torch.save` zip file, reading each group's storages as it is loaded."""
    z = _ZipState(wfile)
    try:
        if not isinstance(z.state, (dict, OrderedDict)):
            raise ValueError(f"{wfile} holds a {type(z.state).__name__}, not a state dict")
        metadata = getattr(z.state, "_metadata", None)
        load_groups(net, list(z.state.keys()), metadata, z.take)
    finally:
        z.close()


def largest_tensor_bytes(net) -> int:
    """Bytes of the largest weight of a module as it is saved: a parameter or buffer (a tensor
    subclass: its inner tensors), or a dynamic-quantized Linear's int8 weight."""
    import torch
    import torch.ao.nn.quantized.dynamic as nnqd

    from .store import _plain
    big = 0
    for mod in net.modules():
        if isinstance(mod, nnqd.Linear):
            big = max(big, mod.in_features * mod.out_features)
        for t in [*mod._parameters.values(), *mod._buffers.values()]:
            if isinstance(t, torch.Tensor):
                big = max(big, sum(x.untyped_storage().nbytes() for x in _plain(t)))
    return big
