"""ExecuTorch: a real ETDump, made here from a tiny exported module, imported into a profile and
checked against the program it ran."""
from __future__ import annotations

import pytest

pytest.importorskip("executorch")

import torch  # noqa: E402
from torch import nn  # noqa: E402

from atomsim.cli import main  # noqa: E402
from atomsim.schema.profile import load_profile  # noqa: E402

pytestmark = pytest.mark.slow


class TwoLinear(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(16, 32), nn.Linear(32, 8)

    def forward(self, x):
        return self.b(torch.relu(self.a(x)))


def export(path, delegate: bool):
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge, to_edge_transform_and_lower
    torch.manual_seed(0)
    ep = torch.export.export(TwoLinear().eval(), (torch.randn(2, 16),))
    edge = to_edge_transform_and_lower(ep, partitioner=[XnnpackPartitioner()]) if delegate else to_edge(ep)
    path.write_bytes(edge.to_executorch().buffer)
    return path


def run_with_etdump(pte, etdump, n=3):
    from executorch.extension.pybindings.portable_lib import _load_for_executorch
    m = _load_for_executorch(str(pte), enable_etdump=True, debug_buffer_size=0)
    for _ in range(n):
        m.forward((torch.randn(2, 16),))
    m.write_etdump_result_to_file(str(etdump))
    return etdump


@pytest.fixture(scope="module")
def dumps(tmp_path_factory):
    d = tmp_path_factory.mktemp("et")
    xnn = export(d / "xnnpack.pte", delegate=True)
    portable = export(d / "portable.pte", delegate=False)
    return {"pte": xnn, "dump": run_with_etdump(xnn, d / "xnnpack.etdp"),
            "other_pte": portable, "other_dump": run_with_etdump(portable, d / "portable.etdp")}


def test_real_etdump_imports_execute_samples_and_checks_program(dumps, tmp_path, capsys):
    from executorch.devtools import Inspector
    into = tmp_path / "p.json"
    assert main(["profile", "import", str(dumps["dump"]), "--format", "etdump", "--program", str(dumps["pte"]),
                 "--as", "video-encoder/fp32:encode", "--threads", "1", "--device", "host", "--into", str(into)]) == 0
    assert "not in the etdump file (left empty): resident_bytes, load.cold_s, load.warm_s" in capsys.readouterr().out
    m = load_profile(into).modules["video-encoder/fp32"]
    st = m.ops["encode"].latency_s["1"]
    execute = next(e for b in Inspector(etdump_path=str(dumps["dump"])).event_blocks for e in b.events
                   if e.name == "Method::execute")
    assert st.n == 3 and st.samples == pytest.approx([x / 1e3 for x in execute.perf_data.raw])   # ms -> s
    assert m.file_bytes == dumps["pte"].stat().st_size
    assert m.resident_bytes is None and m.load.cold_s is None and m.ops["encode"].activation_peak_bytes is None
    assert m.tool_figures["etdump load_method_s"]["n"] == 1
    assert any(k.startswith("Fully Connected") for k in m.ops["encode"].tool_figures["etdump kernels"])
    src = m.imported["ops.encode.latency_s.1"]
    assert src.tool == "etdump" and src.device == "host" and "Inspector" in src.note


def test_etdump_of_another_program_is_refused(dumps, tmp_path, capsys):
    into = tmp_path / "p.json"
    rc = main(["profile", "import", str(dumps["other_dump"]), "--format", "etdump", "--program", str(dumps["pte"]),
               "--as", "video-encoder/fp32:encode", "--threads", "1", "--into", str(into)])
    err = capsys.readouterr().err
    assert rc == 2 and "portable.etdp: field 'Execute." in err and "an ETDump of another program" in err
    assert not into.exists()


def test_not_an_etdump_is_refused(tmp_path, capsys):
    junk = tmp_path / "results.json"
    junk.write_text('{"execution_summary": {}}')
    rc = main(["profile", "import", str(junk), "--format", "etdump", "--as", "video-encoder/fp32:encode",
               "--threads", "1", "--into", str(tmp_path / "p.json")])
    err = capsys.readouterr().err
    assert rc == 2 and "results.json: not an ETDump" in err and len(err.strip().splitlines()) == 1
