#!/usr/bin/env bash
# atomsim on aarch64 Linux, here under user-mode emulation (issue 15): an arm64 Debian 12 root
# (debootstrap) run through qemu-user-static and binfmt_misc. It proves function, never speed:
# the engine and backend probe, `models build` and `profile --quick` of every backend on the tiny
# preset, `run` of the tiny retrieval and assembly scenarios on a short video, and a named subset
# of the tests. Prints a summary, writes it to $OUT/summary.txt, exits non-zero on any failure.
#
#   sudo benchmarks/aarch64_check.sh
#   ATOMSIM_AARCH64_CACHE=DIR  the cached root and venv (default /var/cache/atomsim-aarch64;
#                              delete it to start from nothing)
#   OUT=DIR                    logs, summary and the profile (default $CACHE/out-<date-time>)
#   STEPS="probe build tests run profile"   the checks to run, in this order (default all)
#
# Why the pieces are there:
# - qemu 7.2 passes the host's x86 /proc/cpuinfo through, and `import torch` then segfaults; every
#   command runs in a private mount namespace (unshare -m) where an ARM cpuinfo (Cortex-A76) is
#   bind-mounted over /proc/cpuinfo, with QEMU_CPU=cortex-a76. The namespace's mounts (proc, dev,
#   sys, cpuinfo) vanish with it; binfmt_misc is unmounted at exit if this script mounted it.
# - PyPI's aarch64 torch 2.13.0 is the CUDA build (~2.8 GB of nvidia wheels): the only torch
#   this machine can fetch for aarch64. atomsim itself is installed with --no-deps after it.
set -uo pipefail
HERE=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${ATOMSIM_AARCH64_CACHE:-/var/cache/atomsim-aarch64}
ROOT=$CACHE/bookworm-arm64
OUT=${OUT:-$CACHE/out-$(date +%Y-%m-%d-%H%M)}
STEPS=${STEPS:-probe build tests run profile}
TESTS=(tests/test_models.py tests/test_store_pythons.py tests/test_aarch64.py)
# Left out under emulation: test_profile, test_run*, test_validate* (they run real modules for
# minutes on x86, hours emulated; their code runs in the profile and run steps), and the pure
# Python ones, where nothing depends on the CPU: test_sim*, test_plan, test_schema, test_report_*,
# test_sweep, test_input_props.
mkdir -p "$OUT"
SUMMARY=()
FAILED=0
MOUNTED_BINFMT=0
TREE=""

step() {  # step NAME CMD...: run, log to $OUT/NAME.log, one summary line
  local name=$1 t0 rc
  shift
  t0=$(date +%s)
  "$@" >"$OUT/$name.log" 2>&1
  rc=$?
  [ $rc -eq 0 ] || FAILED=1
  SUMMARY+=("$(printf '%-22s %-4s %6ss  %s' "$name" "$([ $rc -eq 0 ] && echo ok || echo FAIL)" \
    "$(($(date +%s) - t0))" "$(tail -n 1 "$OUT/$name.log" | cut -c1-90)")")
  echo "${SUMMARY[-1]}"
  return $rc
}

host_setup() {
  if ! command -v qemu-aarch64-static >/dev/null || ! command -v debootstrap >/dev/null \
      || ! command -v update-binfmts >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      qemu-user-static binfmt-support debootstrap || return 1
  fi
  if ! mountpoint -q /proc/sys/fs/binfmt_misc; then
    mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc && MOUNTED_BINFMT=1 || return 1
  fi
  update-binfmts --enable qemu-aarch64 && grep -q enabled /proc/sys/fs/binfmt_misc/qemu-aarch64
}

cleanup() {
  [ $MOUNTED_BINFMT -eq 1 ] && umount /proc/sys/fs/binfmt_misc
}
trap cleanup EXIT

mirror() {  # the Debian mirror this machine's apt uses
  local m
  m=$(awk '$1 == "URIs:" {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null)
  [ -n "$m" ] || m=$(awk '$1 == "deb" && $2 !~ /^\[/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null)
  echo "${m:-http://deb.debian.org/debian}"
}

cpuinfo() {  # what /proc/cpuinfo says on a 2-core Cortex-A76 (the part a Raspberry Pi 5 has)
  local i
  for i in 0 1; do
    printf 'processor\t: %s\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp\n' "$i"
    printf 'CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x4\nCPU part\t: 0xd0b\nCPU revision\t: 1\n\n'
  done
}

in_root() {  # in_root CMD...: CMD inside the arm64 root, nice'd, ARM cpuinfo in a private namespace
  nice -n 10 unshare -m --propagation private sh -c '
    r=$1; shift
    mount -t proc proc "$r/proc" && mount --bind "$r/etc/atomsim-cpuinfo" "$r/proc/cpuinfo" \
      && mount --rbind /dev "$r/dev" && mount --rbind /sys "$r/sys" || exit 97
    exec chroot "$r" /usr/bin/env -i PATH=/opt/venv/bin:/usr/bin:/bin HOME=/root LANG=C.UTF-8 \
      QEMU_CPU=cortex-a76 ATOMSIM_STORE=/root/store HF_HUB_OFFLINE=1 PIP_CERT=/etc/atomsim-host-ca.crt \
      PIP_DISABLE_PIP_VERSION_CHECK=1 "$@"' sh "$ROOT" "$@"
}

make_root() {  # debootstrap an arm64 bookworm, then python3 in it; cached
  [ -e "$ROOT/.atomsim-root-ok" ] && { echo "cached: $ROOT"; return 0; }
  rm -rf "$ROOT.tmp"
  nice -n 10 debootstrap --arch=arm64 --variant=minbase bookworm "$ROOT.tmp" "$(mirror)" || return 1
  cpuinfo >"$ROOT.tmp/etc/atomsim-cpuinfo"
  cp /etc/resolv.conf "$ROOT.tmp/etc/resolv.conf"
  ROOT=$ROOT.tmp in_root sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends python3 python3-venv ca-certificates' || return 1
  mv "$ROOT.tmp" "$ROOT" && touch "$ROOT/.atomsim-root-ok"
}

make_venv() {  # torch 2.13.0 (PyPI's aarch64 build: CUDA), then atomsim's dependencies; cached
  local want
  want=$(sha256sum "$HERE/pyproject.toml" | cut -c1-16)
  [ "$(cat "$ROOT/opt/venv/.atomsim-deps" 2>/dev/null)" = "$want" ] && { echo "cached: /opt/venv"; return 0; }
  copy_tree || return 1
  cp /etc/ssl/certs/ca-certificates.crt "$ROOT/etc/atomsim-host-ca.crt"  # the host's CAs (a proxy's)
  in_root sh -c 'python3 -m venv /opt/venv && pip install -q torch==2.13.0 \
    && pip install -q -e /src/atomsim pytest hypothesis' || return 1
  echo "$want" >"$ROOT/opt/venv/.atomsim-deps"
  in_root sh -c 'du -sh /opt/venv; pip list 2>/dev/null | grep -i -E "^(torch|torchao|nvidia-cublas)"'
}

copy_tree() {  # the working tree (tracked and untracked files, not the ignored ones) into /src/atomsim
  TREE="commit $(git -C "$HERE" rev-parse --short HEAD)$([ -n "$(git -C "$HERE" status --porcelain --untracked-files=no)" ] \
    && echo ' with uncommitted changes') copied $(date -u +%H:%MZ)"
  rm -rf "$ROOT/src/atomsim" && mkdir -p "$ROOT/src/atomsim" \
    && (cd "$HERE" && git ls-files -co --exclude-standard -z | xargs -0 tar -c --ignore-failed-read) \
    | tar -x -C "$ROOT/src/atomsim"
}

install_atomsim() {
  copy_tree && in_root pip install -q --no-deps --no-build-isolation -e /src/atomsim
}

PROBE='
import platform, torch, warnings
from torch import nn
print("arch", platform.machine(), "torch", torch.__version__, "default engine", torch.backends.quantized.engine)
bad = []
for e in torch.backends.quantized.supported_engines:
    torch.backends.quantized.engine = e
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m = torch.ao.quantization.quantize_dynamic(nn.Sequential(nn.Linear(64, 32)), {nn.Linear}, dtype=torch.qint8)
        m(torch.randn(4, 64)); print("quantize_dynamic", e, "ok")
    except Exception as x:
        print("quantize_dynamic", e, "fails:", type(x).__name__, str(x)[:80])
from torchao.quantization import quantize_, Int8DynamicActivationInt8WeightConfig, Int8WeightOnlyConfig
for cfg in (Int8DynamicActivationInt8WeightConfig(), Int8WeightOnlyConfig()):
    m = nn.Sequential(nn.Linear(64, 32)); quantize_(m, cfg); m(torch.randn(4, 64))
    print("torchao", type(cfg).__name__, "ok")
from atomsim.models.quant import set_engine
print("atomsim engine", set_engine())
from atomsim.profile.fingerprint import fingerprint
fp = fingerprint(); print("fingerprint cpu", fp.get("cpu_model"), "cores", fp.get("core_types"), "emulation", fp.get("emulation"))
'

run_both() {  # run the tiny retrieval and assembly scenarios on a 12 s video
  in_root python -c 'from atomsim.run.synthetic import make_video; make_video("/root/clip.mp4", seconds=12, width=160, height=120)' \
    || return 1
  local s
  for s in retrieval assembly; do
    in_root atomsim run "/src/atomsim/scenarios/examples/$s-tiny.yaml" --videos /root/clip.mp4 \
      --out "/root/out/run-$s" --no-progress || return 1
    in_root python -c "import json; s = json.load(open('/root/out/run-$s/summary.json')); print('$s', 'e2e', s['e2e_s'], 's, clips', s['clips'], ', peak MB', round(s['peak_bytes'] / 1e6))"
  done
}

profile_all() {  # every backend, one round, 1 thread, no co-run: function, not speed
  in_root mkdir -p /root/out && in_root atomsim profile --preset tiny --quick --samples 1 --quant all --threads 1 --no-corun \
    --out /root/out/aarch64-emulated-tiny.json && cp "$ROOT/root/out/aarch64-emulated-tiny.json" "$OUT/" \
    && in_root atomsim profile show /root/out/aarch64-emulated-tiny.json
}

main() {
  local t0=$SECONDS
  echo "aarch64 check: cache $CACHE, logs $OUT"
  step host-setup host_setup || { printf '%s\n' "${SUMMARY[@]}"; exit 1; }
  step root make_root && step venv make_venv && step install install_atomsim || FAILED=1
  local s
  for s in $STEPS; do
    [ $FAILED -eq 0 ] || break
    case $s in
      probe) step probe in_root python -c "$PROBE" ;;
      build) step build in_root atomsim models build --preset tiny ;;
      tests) step tests in_root sh -c "cd /src/atomsim && python -m pytest -p no:cacheprovider -W ignore ${TESTS[*]}" ;;
      run) step run run_both ;;
      profile) step profile profile_all ;;
      *) echo "unknown step $s (probe build tests run profile)" >&2; FAILED=1 ;;
    esac
  done
  {
    echo "aarch64 check $(date -u +%Y-%m-%dT%H:%MZ), working tree: ${TREE:-not copied}, under qemu-user $(qemu-aarch64-static --version | head -n 1 | awk '{print $3}') (function only: no timing means anything)"
    printf '%s\n' "${SUMMARY[@]}"
    grep -h -E "^(arch|quantize_dynamic|torchao|atomsim engine|fingerprint)" "$OUT/probe.log" 2>/dev/null
    grep -h -E "^(retrieval|assembly) e2e" "$OUT/run.log" 2>/dev/null
    echo "steps: $STEPS; tests: ${TESTS[*]}"
    grep -h -E "[0-9]+ (passed|failed)" "$OUT/tests.log" 2>/dev/null | tail -n 1
    echo "wall $((SECONDS - t0)) s; $([ $FAILED -eq 0 ] && echo PASSED || echo FAILED)"
  } | tee "$OUT/summary.txt"
  exit $FAILED
}

main "$@"
