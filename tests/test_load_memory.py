"""A module load holds little beyond what it keeps (issue 27): its temporaries (peak anonymous
memory during the load above what the load keeps) at most its largest tensor plus 10% (and the
few MB any load allocates besides its tensors), measured in a new process under atomsim's process
settings, for a tiny module of every backend and a small one (the video encoder: its dyn8 load
held its whole file twice, 27 MB against a 1.2 MB largest tensor). The int8 backends' files are
read tensor by tensor (models/tensorwise.py) and give the same module, to the bit, as the
whole-state load they replaced (stores built before load unchanged)."""
from __future__ import annotations


import pytest

torch = pytest.importorskip("torch")

from atomsim import models  # noqa: E402
from atomsim.errors import ModelStoreError  # noqa: E402
from atomsim.models import quant as q  # noqa: E402
from atomsim.models import specs, store, tensorwise, zoo  # noqa: E402
from atomsim.profile import memory  # noqa: E402

MB = 10**6
# what any load of a process allocates besides its tensors (the pickle and its objects, heap pages
# of the many small tensors): 5-7 MB measured for the small and the paper video encoders alike
# (28 and 309 MB files)
SLACK = 8 * MB
BACKENDS = ("fp32", "torch-dynamic-int8", "torchao-int8", "torchao-int8-weight-only")


def measure(preset, model, quant, store_dir) -> dict:
    """One load in a new process: file, kept, temporaries, largest tensor (bytes)."""
    return memory.measure_module_load_in_new_process(preset, model, quant, store_dir, timeout=600)


def bounded(preset, model, quant, store_dir, tries: int = 3) -> dict:
    """The load's figures, measured until within the bound (at most `tries` new processes): the
    figure's noise is upward only (the same torchao load of the small video encoder measured
    0.1-8.5 MB in 5 processes), so a load that keeps to the bound shows it in one of a few."""
    for _ in range(tries):
        r = measure(preset, model, quant, store_dir)
        assert r["kept_bytes"] >= 0.8 * r["file_bytes"], r     # the weights were loaded, and counted
        if r["load_temporaries_bytes"] <= 1.1 * r["largest_tensor_bytes"] + SLACK:
            return r
    raise AssertionError(f"load temporaries above the bound in {tries} processes: {r}")


@pytest.fixture(scope="module")
def small_store(tmp_path_factory):
    st = tmp_path_factory.mktemp("small-load-store")
    for quant in BACKENDS:
        models.build("small", "video-encoder", quant, store=st)
    return st


@pytest.mark.parametrize("quant", BACKENDS)
def test_tiny_loads_hold_at_most_their_largest_tensor(tiny_store, quant):
    if memory.anon() is None:
        pytest.skip("no RssAnon here")
    for model in models.MODELS:
        bounded("tiny", model, quant, tiny_store)


@pytest.mark.parametrize("quant", BACKENDS)
def test_small_video_encoder_load_holds_at_most_its_largest_tensor(small_store, quant):
    if memory.anon() is None:
        pytest.skip("no RssAnon here")
    r = bounded("small", "video-encoder", quant, small_store)
    if quant == "torch-dynamic-int8":   # the whole-state load held its file twice: 26 MB here
        assert r["load_temporaries_bytes"] < 0.5 * r["file_bytes"], r


def _old_load(preset, model, quant, st):
    """The whole-state load this replaced (store.load_net before issue 27)."""
    d = store.model_dir(preset, model, quant, st)
    cfg = specs.arch_config(preset, model) if model != "sentence-encoder" else None
    net = zoo.make(model, cfg, cfg_dir=d)
    if quant == "torch-dynamic-int8":
        q.swap_dynamic_structure(net)
    net.load_state_dict(store.read_int8_state(d / "model.pt"), strict=False, assign=True)
    return net.eval()


def _leaves(x) -> list:
    if isinstance(x, tuple):
        return [y for e in x for y in _leaves(e)]
    return store._plain(x) if isinstance(x, torch.Tensor) else [x]   # torchao's: its inner tensors


def _same_state(a, b) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for k in sa:
        xs, ys = _leaves(sa[k]), _leaves(sb[k])
        assert len(xs) == len(ys), k
        for u, v in zip(xs, ys):
            if not isinstance(u, torch.Tensor):
                assert u == v, k
                continue
            assert type(u) is type(v) and u.dtype == v.dtype and u.shape == v.shape, k
            if u.is_quantized:
                assert (u.q_scale(), u.q_zero_point()) == (v.q_scale(), v.q_zero_point()), k
                u, v = u.int_repr(), v.int_repr()
            assert torch.equal(u, v), k


@pytest.mark.parametrize("quant", ["torch-dynamic-int8", "torchao-int8", "torchao-int8-weight-only"])
def test_tiny_int8_modules_identical_to_whole_state_load(tiny_store, quant):
    for model in models.MODELS:
        old = _old_load("tiny", model, quant, tiny_store)
        new = models.load("tiny", model, quant, store=tiny_store)
        _same_state(old, new.net)
    if quant != "torch-dynamic-int8":   # and they compute the same
        x = torch.randn(6, 3, 224, 224, generator=torch.Generator().manual_seed(1))
        assert torch.equal(zoo.encode(_old_load("tiny", "video-encoder", quant, tiny_store), x),
                           models.load("tiny", "video-encoder", quant, store=tiny_store).encode(x))


def test_small_decoder_int8_same_tokens_and_logits(tmp_path_factory):
    """The small preset's decoder (a 286 MB file): the same state, logits and beam-4 caption tokens
    as the whole-state load."""
    st = tmp_path_factory.mktemp("small-dec")
    models.build("small", "decoder", "torch-dynamic-int8", store=st)
    old = _old_load("small", "decoder", "torch-dynamic-int8", st)
    new = models.load("small", "decoder", "torch-dynamic-int8", store=st)
    _same_state(old, new.net)
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(3, 32000, (1, 12), generator=g)
    with torch.inference_mode():
        assert torch.equal(old.lm(input_ids=ids).logits, new.net.lm(input_ids=ids).logits)
    feats = torch.randn(new.feature_dim(), generator=g)
    assert zoo.llama_caption(old, feats, beam=4, tokens=23) == new.caption(feats, beam=4, tokens=23)


def test_int8_storage_is_private_anonymous_memory():
    """The int8 weights read for packing are counted as the process's anonymous memory (a shared
    mapping would hide them from RssAnon and from the cgroup's anonymous figure)."""
    if memory.anon() is None:
        pytest.skip("no RssAnon here")
    memory.settle()
    a0 = memory.anon()
    st = tensorwise._anon_storage(64 << 20)
    assert memory.anon() - a0 < 8 * MB            # allocated, not resident
    torch.empty(0, dtype=torch.uint8).set_(st).fill_(1)
    assert memory.anon() - a0 > 60 * MB           # resident once written, as anonymous memory
    del st
    memory.settle()
    assert memory.anon() - a0 < 8 * MB            # unmapped when freed: no trim needed


def test_corrupt_int8_files_name_the_file(tiny_store, tmp_path):
    import shutil
    st = tmp_path / "s"
    shutil.copytree(tiny_store / "tiny" / "decoder", st / "tiny" / "decoder")
    f = models.weight_files("tiny", "decoder", "torch-dynamic-int8", store=st)[0]
    data = f.read_bytes()
    f.write_bytes(b"\xff" * 64 + data[64:])          # garbage header, same size
    with pytest.raises(ModelStoreError, match="corrupt") as e:
        models.load("tiny", "decoder", "torch-dynamic-int8", store=st)
    assert str(f) in str(e.value) and "atomsim models build --preset tiny --model decoder" in str(e.value)
    f.write_bytes(data[:len(data) // 2])
    with pytest.raises(ModelStoreError, match="corrupt"):
        models.load("tiny", "decoder", "torch-dynamic-int8", store=st)


def test_groups_follow_the_owning_modules():
    net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.LayerNorm(2))
    keys = ["0.weight", "0.bias", "1.weight", "1.bias", "2.weight", "extra"]
    assert tensorwise.groups(keys, dict(net.named_modules())) == [
        ("0", ["0.weight", "0.bias"]), ("1", ["1.weight", "1.bias"]), ("", ["extra"])]


def test_a_load_trims_the_heap_as_it_reads(monkeypatch):
    """Other lanes free their activations into the same heap while a load runs: the load trims it
    after every TRIM_EVERY_BYTES read (measured in a run: the small dyn8 decoder's load beside 4
    encodes peaked 250 MB above what it kept untrimmed, and was no longer the run's peak trimmed)."""
    trims = []
    monkeypatch.setattr(tensorwise, "malloc_trim", lambda: trims.append(1))
    net = torch.nn.Sequential(*(torch.nn.Linear(64, 64) for _ in range(6)))
    state = {k: v.clone() for k, v in net.state_dict().items()}
    per_group = 64 * 64 * 4 + 64 * 4
    monkeypatch.setattr(tensorwise, "TRIM_EVERY_BYTES", 2 * per_group)
    tensorwise.load_groups(net, list(state), None, lambda ks: {k: state[k] for k in ks})
    assert len(trims) == 3                           # 6 groups, a trim after every second
    assert all(torch.equal(net.state_dict()[k], state[k]) for k in state)
    trims.clear()
    monkeypatch.setattr(tensorwise, "TRIM_EVERY_BYTES", 1 << 40)
    tensorwise.load_groups(net, list(state), None, lambda ks: {k: state[k] for k in ks})
    assert trims == []


def test_packed_int8_values_count_their_bytes():
    w = torch.quantize_per_tensor(torch.randn(8, 4), 0.1, 0, torch.qint8)
    assert tensorwise._nbytes(w) == 32
    assert tensorwise._nbytes((w, torch.zeros(8))) == 32 + 32      # a packed Linear's (weight, bias)
    assert tensorwise._nbytes(torch.qint8) == 0 and tensorwise._nbytes(None) == 0
