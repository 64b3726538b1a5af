"""The torch-dynamic-int8 load holds about one Linear's int8 weight beyond what it keeps: the
saved state is read tensor by tensor (models/tensorwise.py) and each weight freed once packed;
the placeholders pack no full-size weight and `touch` unpacks nothing; a cold load counts its
file as read once. Anonymous memory is exact here (no drift): the bounds are tight against a
67 MB module of 8 MiB Linears (the whole-state load it replaced held the 67 MB state while
packing it)."""
from __future__ import annotations

import gc

import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

from atomsim.models import quant as q
from atomsim.models import store
from atomsim.profile import memory

MB = 10**6
IN, OUT, N = 2048, 4096, 8          # 8 Linears of 8 MiB int8 each: 67 MB of weights


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = nn.Sequential(*[nn.Linear(IN if i % 2 == 0 else OUT, OUT if i % 2 == 0 else IN)
                                      for i in range(N)])


def _anon():
    memory.settle()
    return memory.anon()


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    if memory.anon() is None:
        pytest.skip("no RssAnon in /proc/self/status")
    q.set_engine()
    net = q.quantize(Net(), "torch-dynamic-int8")
    path = tmp_path_factory.mktemp("int8") / "weights.pt"
    store._save_weights(net, "torch-dynamic-int8", path)
    x = torch.randn(3, IN)
    ref = net.layers(x)
    del net
    gc.collect()
    return path, x, ref


def _empty():
    with torch.device("meta"):
        net = Net()
    q.swap_dynamic_structure(net)
    return net


def test_placeholders_pack_no_full_size_weight(saved):
    a0 = _anon()
    net = _empty()
    assert _anon() - a0 < 2 * MB      # a full-size zero packing: +67 MB
    assert len(q.check_dynamic_shapes(net)) == N   # unfilled placeholders are named


def test_int8_load_peak_is_one_weight_and_same_outputs(saved):
    path, x, ref = saved
    a0 = _anon()
    with memory.AnonPeak() as pk:
        net = _empty()
        store.fill(net, path, "torch-dynamic-int8")
        store.touch(net)
    kept = _anon() - a0
    assert q.check_dynamic_shapes(net) == []
    assert torch.equal(net.layers(x), ref)
    assert 60 * MB < kept < 75 * MB, kept            # the packed weights, once
    # one Linear's int8 weight (8.4 MB) read while it is packed, and little more: the whole state
    # read first held 67 MB more, full-size zero placeholders would add another 67 MB, and
    # state_dict() in touch would unpack 67 MB more
    assert pk.peak - a0 - kept < 8.4 * MB + 6 * MB, (pk.peak - a0 - kept)


def test_cold_int8_load_counts_its_whole_file(saved, tmp_path):
    """A cold int8 load in a lane thread counts its whole file as read, once."""
    import threading

    from atomsim import pagecache
    from atomsim.run import reads_during
    path, _, _ = saved
    big = tmp_path / "big.pt"   # a 64 MB float tensor beside the int8 weights
    sd = torch.load(str(path), weights_only=False)
    sd["emb"] = torch.randn(16 << 20)
    torch.save(sd, str(big), pickle_module=q.PICKLE)
    del sd
    if not pagecache.evict([big]) or reads_during(lambda: None)[1] is None:
        pytest.skip("no page-cache eviction or io counters here")
    torch.set_num_threads(2)
    got = {}

    def load():
        net = _empty()
        net.emb = nn.Parameter(torch.empty(16 << 20, device="meta"))

        _, got["read"] = reads_during(lambda: store.fill(net, big, "torch-dynamic-int8"))
    t = threading.Thread(target=load)
    t.start()
    t.join()
    assert 0.95 * big.stat().st_size <= got["read"] <= 1.05 * big.stat().st_size, (got, big.stat().st_size)
