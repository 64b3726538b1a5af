"""The runner's decoder process: the `decode:i` steps' PyAV work, away from the lanes' interpreter.

Why: PyAV hands every decoded frame back to Python, so a decode in a lane thread takes the
interpreter lock (GIL) back for every frame. Measured (docs/fidelity-tiny.md), one clip's decode:
0.026 s alone, 1.41 s beside a thread running a pure-Python loop. The simulator has lanes share
the cores, not an interpreter; decoding in a process of its own, the decode lane meets the other
lanes only on the CPU, where the simulator has them meet.

    dec = start_decoder(warm=(clips[0], 6, 224))   # before the run's clock starts
    frames = decode(clip, 6, 224, dec)              # float32 torch [F, 3, S, S], CLIP-normalized
    dec.peak_bytes(); dec.stop()                     # stop in every case (errors, Ctrl-C)

- The worker is a new interpreter, `python -m atomsim.run.decoder FD` (fork and exec, as
  multiprocessing's "spawn"; not fork alone: the parent has torch's threads), talking through a
  `multiprocessing.Pipe` whose child end it inherits as FD. It imports PyAV and numpy
  (`video.clip_images`), never torch. Not `multiprocessing.Process` itself: its spawn (and
  forkserver) children first import the parent's main module when that is a script, which runs
  the script's top-level imports (torch, say) in the worker and, in a script without an
  `if __name__ == "__main__":` guard, fails; spawn also starts a resource-tracker process.
- A request is one clip (video, index, start, end, origin) and (frames, size); the answer is its
  uint8 frames [F, S, S, 3], received into a buffer allocated before the request, which the
  parent then normalizes (`video.normalize`): byte-identical to `video.decode_clip` in a thread.
- The calling thread waits on the pipe (the GIL released), polling every `POLL_S` and checking
  that the worker lives: a killed worker (the OOM killer under a cgroup RAM limit) raises
  `DecoderError` instead of hanging, and so does every later request.
- A `VideoError` in the worker (a corrupt file) comes back as the same one-line `VideoError`, a
  `MemoryError` as a `MemoryError`, anything else as a `DecoderError` naming its type.
- One request at a time (a lock): the plan sends decodes from one lane, two threads are safe.
- The worker runs in a session of its own, so that Ctrl-C (SIGINT to the terminal's process
  group) reaches the parent only, which stops it; it also ignores SIGINT, and exits quietly when
  its pipe closes (the parent stopped it, or died: killed, its end closes with it).
- `peak_bytes()`: the worker's own peak RSS (VmHWM); the runner's memory sampler reads its own
  process only, and reports this apart as the summary's `decoder_peak_bytes`.

`ATOMSIM_DECODE_IN_THREAD=1` keeps the former behaviour for comparisons: `start_decoder` starts
nothing (returns None) and `decode` decodes in the calling thread (`video.decode_clip`).
"""
from __future__ import annotations

import os
import signal
import threading

from ..errors import AtomsimError, VideoError

IN_THREAD_ENV = "ATOMSIM_DECODE_IN_THREAD"
POLL_S = 0.2          # how often a waiting request checks that the worker lives
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 5.0


class DecoderError(AtomsimError):
    """The decoder process died, or failed otherwise than on the video."""


def in_thread() -> bool:
    """True when `ATOMSIM_DECODE_IN_THREAD` asks for the former in-thread decode."""
    return os.environ.get(IN_THREAD_ENV, "").strip().lower() not in ("", "0", "false", "no")


def start_decoder(warm=None) -> "DecoderProcess | None":
    """A started worker (None under `ATOMSIM_DECODE_IN_THREAD=1`). `warm`: (clip, frames, size)
    decoded once now, so that a first call's set-up is start-up, as the profile keeps its warm-up
    apart."""
    if in_thread():
        return None
    dec = DecoderProcess()
    dec.start()
    if warm is not None:
        try:
            dec.images(*warm)
        except BaseException:
            dec.stop()
            raise
    return dec


def decode(clip, frames: int, frame_size: int, worker: "DecoderProcess | None" = None):
    """A clip's CLIP-normalized frames (float32 torch [F, 3, S, S]): the uint8 frames from `worker`,
    normalized here; without a worker, all of it in this thread (`video.decode_clip`)."""
    from .video import decode_clip, normalize
    if worker is None:
        return decode_clip(clip, frames, frame_size)
    return normalize(worker.images(clip, frames, frame_size))


class DecoderProcess:
    """One decoder worker process and the pipe to it (see the module docstring)."""

    def __init__(self):
        self.proc = None   # subprocess.Popen
        self.conn = None
        self.lock = threading.Lock()
        self.broken: str | None = None   # why requests can no longer be served
        self.torch_imported: bool | None = None   # the worker's word at start (tests: False)

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    def start(self) -> None:
        """Start the worker and wait until it has imported PyAV; stopped again on any error."""
        import multiprocessing
        import subprocess
        import sys
        parent, child = multiprocessing.Pipe(duplex=True)
        self.conn = parent
        try:
            try:
                self.proc = subprocess.Popen([sys.executable, "-m", "atomsim.run.decoder", str(child.fileno())],
                                             pass_fds=(child.fileno(),), stdin=subprocess.DEVNULL,
                                             stdout=subprocess.DEVNULL, env=_child_env(), start_new_session=True)
            finally:
                child.close()
            hello = self._answer(START_TIMEOUT_S)
            if not (isinstance(hello, tuple) and hello[0] == "ready"):
                raise DecoderError(f"the decoder process did not start: {hello!r}")
            self.torch_imported = bool(hello[2])
        except BaseException:
            self.stop()
            raise

    def images(self, clip, frames: int, frame_size: int):
        """uint8 numpy [frames, size, size, 3] of `clip`, decoded by the worker."""
        import numpy as np
        out = np.empty((int(frames), int(frame_size), int(frame_size), 3), dtype=np.uint8)
        req = (str(clip.video), int(clip.index), float(clip.start_s), float(clip.end_s),
               float(getattr(clip, "origin_s", 0.0)), int(frames), int(frame_size))
        with self.lock:
            if self.broken or self.proc is None:
                raise DecoderError(self.broken or "the decoder process was not started")
            try:
                self.conn.send(req)
                head = self._answer()
                if head[0] == "ok":
                    self.conn.recv_bytes_into(out.reshape(-1))
            except (EOFError, OSError):
                raise self._died() from None
            except DecoderError:
                raise
            except BaseException:
                self.broken = "the decoder process's pipe was left mid-request (an earlier request was interrupted)"
                raise
        if head[0] == "ok":
            return out
        if head[0] == "VideoError":
            raise VideoError(head[1])
        if head[0] == "MemoryError":
            raise MemoryError(head[1])
        raise DecoderError(f"the decoder process failed on {clip.video} clip {clip.index}: {head[1]}")

    def _answer(self, timeout_s: float | None = None):
        """The worker's next message; DecoderError if it dies (or `timeout_s` passes) first."""
        waited = 0.0
        while not self.conn.poll(POLL_S):
            waited += POLL_S
            if self.proc.poll() is not None:
                raise self._died()
            if timeout_s is not None and waited >= timeout_s:
                self.broken = f"the decoder process did not answer within {timeout_s:.0f} s"
                raise DecoderError(self.broken)
        try:
            return self.conn.recv()
        except (EOFError, OSError):
            raise self._died() from None

    def _died(self) -> DecoderError:
        try:
            code = self.proc.wait(1.0)
        except Exception:  # noqa: BLE001 - still running: its pipe broke
            code = None
        how = (f"killed by signal {-code}" if code is not None and code < 0 else f"exit status {code}")
        hint = " (SIGKILL: the kernel's OOM killer under a RAM limit?)" if code == -signal.SIGKILL else ""
        self.broken = f"the decoder process (pid {self.proc.pid}) died: {how}{hint}"
        return DecoderError(self.broken)

    def peak_bytes(self) -> int | None:
        """The worker's peak RSS (VmHWM of /proc/<pid>/status); None if gone or unknown."""
        return self._status("VmHWM")

    def anon_bytes(self) -> int | None:
        """The worker's anonymous memory now (RssAnon): what a memory cgroup charges for it
        beyond the pages it shares with the runner; None if gone or unknown."""
        return self._status("RssAnon")

    def _status(self, field: str) -> int | None:
        from .memory import process_status_bytes
        if self.proc is None or self.proc.poll() is not None:
            return None
        return process_status_bytes(self.proc.pid, field)

    def stop(self) -> None:
        """Ask the worker to exit; kill it if it has not within STOP_TIMEOUT_S (or if a request
        holds the pipe that long). Idempotent; the worker is not started again."""
        import subprocess
        proc, conn = self.proc, self.conn
        try:
            if proc is not None and proc.poll() is None and self.lock.acquire(timeout=STOP_TIMEOUT_S):
                try:
                    conn.send(None)
                except OSError:
                    pass
                finally:
                    self.lock.release()
                proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            pass
        finally:
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
            if conn is not None:
                conn.close()
            self.broken = self.broken or "the decoder process was stopped"


def _child_env() -> dict:
    """The parent's environment, with the directory atomsim is imported from first on PYTHONPATH
    (the worker imports the same atomsim, installed or not)."""
    from pathlib import Path
    root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env


# ---------------------------------------------------------------- the worker's side

def _serve(fd: int) -> None:
    """The worker's loop: one request, one answer, until None or the pipe closes."""
    import sys
    from multiprocessing.connection import Connection
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    conn = Connection(fd)
    import av  # noqa: F401  (imported before the run's clock, not in its first decode)

    from .video import Clip
    try:
        conn.send(("ready", os.getpid(), "torch" in sys.modules))
        while True:
            req = conn.recv()
            if req is None:
                return
            video, index, start, end, origin, frames, size = req
            _answer_request(conn, Clip(video, index, start, end, None, origin), frames, size)
    except (EOFError, OSError):   # the pipe closed: the parent is gone
        return


def _answer_request(conn, clip, frames: int, size: int) -> None:
    from .video import clip_images
    try:
        img = clip_images(clip, frames, size)
    except VideoError as e:
        conn.send(("VideoError", str(e)))
    except MemoryError as e:
        conn.send(("MemoryError", str(e) or "out of memory in the decoder process"))
    except Exception as e:  # noqa: BLE001 - reported to the parent, one line
        conn.send(("error", f"{type(e).__name__}: {' '.join(str(e).split())[:300]}"))
    else:
        conn.send(("ok",))
        conn.send_bytes(img.reshape(-1))


if __name__ == "__main__":
    import sys
    _serve(int(sys.argv[1]))
