"""The model store across Pythons. Python 3.11.0-3.11.4 (Debian 12's /usr/bin/python3 is 3.11.2)
pickle an enum member as `getattr(Cls, name)`, which `torch.load(weights_only=True)` refused, so
torchao-int8 modules built by them did not load. `.ci/run` also runs this file under
/usr/bin/python3 where that is another Python than the suite's."""
import enum
import json
import pickle
import pickletools
import sys
import zipfile

import pytest
import torch

from atomsim import models
from atomsim.models import quant as q
from atomsim.models import store as st

PAIRS = [(m, b) for m in models.MODELS for b in models.BACKENDS]


def pickled_globals(path) -> set:
    """'module name' of every GLOBAL in a torch.save file's data.pkl (protocol 2 names builtins
    `__builtin__`, as Python 2 did)."""
    with zipfile.ZipFile(path) as z:
        data = z.read(next(n for n in z.namelist() if n.endswith("data.pkl")))
    return {arg.replace("__builtin__ ", "builtins ") for op, arg, _ in pickletools.genops(data)
            if op.name == "GLOBAL"}


@pytest.fixture
def enums_by_name(monkeypatch):
    """Pickle enum members as Python 3.11.0-3.11.4 do."""
    monkeypatch.setattr(enum.Enum, "__reduce_ex__", lambda self, proto: (getattr, (type(self), self._name_)))


@pytest.mark.parametrize("model,quant", PAIRS)
def test_every_backend_saves_without_enums_by_name_and_loads(tiny_store, model, quant):
    print(f"python {sys.version.split()[0]}")
    mod = models.load("tiny", model, quant, store=tiny_store, verify=True)
    assert mod.net is not None
    mod.free()
    if quant != "fp32":
        f = models.weight_files("tiny", model, quant, store=tiny_store)[0]
        assert "builtins getattr" not in pickled_globals(f)


def test_build_under_old_pythons_pickling_is_byte_identical(tiny_store, tmp_path, enums_by_name):
    d = models.build("tiny", "decoder", "torchao-int8", store=tmp_path)
    f = d / "model.pt"
    assert "torchao.quantization.quant_primitives MappingType" in pickled_globals(f)
    assert "builtins getattr" not in pickled_globals(f)
    ref = tiny_store / "tiny" / "decoder" / "torchao-int8" / "model.pt"
    assert st.sha256(f) == st.sha256(ref)


def _resave_by_name(d):
    """Rewrite a stored module's weights as the code before the fix did under Python 3.11.2."""
    f = d / "model.pt"
    sd = torch.load(str(f), weights_only=True)
    torch.save(sd, str(f))
    meta = json.loads((d / "atomsim.json").read_text())
    meta["files"]["model.pt"] = {"bytes": f.stat().st_size, "sha256": st.sha256(f)}
    (d / "atomsim.json").write_text(json.dumps(meta))
    return f


def test_file_saved_with_enums_by_name_loads(tmp_path, enums_by_name):
    quant = "torchao-int8"  # the backend whose tensors hold an enum (MappingType)
    d = models.build("tiny", "video-encoder", quant, store=tmp_path)
    ref = models.load("tiny", "video-encoder", quant, store=tmp_path)
    (frames,) = ref.example_inputs("encode", frames=2, frame_size=112)
    want = ref.encode(frames)
    f = _resave_by_name(d)
    assert "builtins getattr" in pickled_globals(f)  # the old form, really
    mod = models.load("tiny", "video-encoder", quant, store=tmp_path, verify=True)
    assert torch.equal(mod.encode(frames), want)


class _Sneaky:
    def __init__(self, cls, name):
        self.cls, self.name = cls, name

    def __reduce__(self):
        return getattr, (self.cls, self.name)


@pytest.mark.parametrize("cls,name", [("MappingType", "_member_map_"), ("MappingType", "__class__"),
                                      ("ZeroPointDomain", "INT"), ("Module", "forward")])
def test_getattr_admitted_only_for_enum_members(tmp_path, cls, name):
    from torchao.quantization.quant_primitives import MappingType, ZeroPointDomain
    target = {"MappingType": MappingType, "ZeroPointDomain": ZeroPointDomain,
              "Module": torch.nn.Module}[cls]
    assert q._enum_member(MappingType, "SYMMETRIC") is MappingType.SYMMETRIC
    f = tmp_path / "x.pt"
    torch.save({"x": _Sneaky(target, name)}, str(f))
    q.allow_enum_by_name()
    with pytest.raises(pickle.UnpicklingError):
        torch.load(str(f), weights_only=True)

