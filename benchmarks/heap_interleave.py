"""The heap an alternation of encode and caption keeps: small torch-dynamic-int8 video encoder
and BERT caption decoder loaded together, 1 thread, in a lane thread as the runner runs them;
anonymous memory after each call over what the loads left, with or without malloc_trim after
each call (the validation suite's v08 kept about 200 MB over its weights, the simulator 50-100).

    python benchmarks/heap_interleave.py notrim|trim

Needs the small preset built (atomsim models build --preset small --quant torch-dynamic-int8).
Exits 1 when a call fails (nothing measured)."""
import gc
import sys
import threading

from atomsim.process import pin_measurement_process, quiet_import_noise

pin_measurement_process()   # huge pages and malloc settings as the runner has them, before torch
quiet_import_noise()

import torch  # noqa: E402

from atomsim import models  # noqa: E402
from atomsim.profile import memory  # noqa: E402

trim = len(sys.argv) > 1 and sys.argv[1] == "trim"
torch.set_num_threads(1)
out = []


def anon() -> float:
    return memory.split()["anon"] / 1e6


def body():
    enc = models.load("small", "video-encoder", "torch-dynamic-int8")
    dec = models.load("small", "bert-decoder", "torch-dynamic-int8")
    gc.collect()
    models.malloc_trim()
    base = anon()
    out.append(f"after loads: {base:.0f}")
    (frames,) = enc.example_inputs("encode")
    for i in range(6):
        feats = enc.encode(frames)
        a1 = anon()
        if trim:
            models.malloc_trim()
        a1t = anon()
        dec.caption(feats)
        a2 = anon()
        if trim:
            models.malloc_trim()
        out.append(f"clip {i}: after encode +{a1 - base:.0f} (trimmed +{a1t - base:.0f}), "
                   f"after caption +{a2 - base:.0f}, trimmed +{anon() - base:.0f}")


th = threading.Thread(target=body)
th.start()
th.join()
print("\n".join(out))
sys.exit(0 if len(out) == 7 else 1)
