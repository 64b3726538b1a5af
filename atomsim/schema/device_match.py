"""Does a profile describe the device a scenario runs on? The one check `simulate`, `validate`,
`sweep`, `report memory` and `search` make before they use a profile's figures.

    why = device_mismatch(profile, scenario.device)          # None, or why it does not fit
    note = check_device(profile, scenario.device, allow=args.allow_device_mismatch,
                        profile_path=path, scenario_path=scenario_file)   # ConfigError, or the note to mark outputs with

What counts as a match (the profile's `source`, `device.name` and fingerprint):

- a profile measured under emulation (qemu-user: `device.emulation.emulated`, or that of the
  profile a projection was made from) never matches where times matter (`timing=True`): no time
  in it says anything about a CPU;
- a profile that names its device (`device.name`: the published phone profiles, projections, imports
  with a device) matches a device of that name: the catalog's name (also `{base: NAME, ...}`), or
  a longer name containing it as a word (an import's "Samsung Galaxy S23" is galaxy_s23). A mapping
  device without a name (`custom`) is the user's own: nothing to compare, it matches;
- a profile measured by `atomsim profile` (no name, the machine's fingerprint) matches `host` (the
  machine atomsim runs on), a device of one's own (not in the catalog), and a catalog phone only
  when its fingerprint's ARM core types are the phone's (`soc` in the catalog: A76 and A55 for the
  Pixel 5a).
"""
from __future__ import annotations

import re

from ..errors import ConfigError

FLAG = "--allow-device-mismatch"


def _norm(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", str(text).lower()).strip("_")


def same_name(profile_name: str, device_name: str) -> bool:
    """`Samsung Galaxy S23` names galaxy_s23; `google Pixel 8 Android 14` does not name pixel_8a."""
    p, d = _norm(profile_name), _norm(device_name)
    return bool(d) and (p == d or re.search(rf"(^|_){re.escape(d)}(_|$)", p) is not None)


def emulation_evidence(device: dict) -> list[str] | None:
    """The evidence of emulation of a profile's device (or of the profile it was projected from)."""
    for d in (device or {}, (device or {}).get("projected_from") or {}):
        emu = d.get("emulation") or {}
        if emu.get("emulated"):
            return list(emu.get("evidence") or ["(no evidence recorded)"])
    return None


def _machine(d: dict) -> str:
    what = " ".join(str(x) for x in (d.get("cpu_model"), d.get("arch")) if x)
    return what + (f", hostname {d['hostname']}" if d.get("hostname") else "")


def describe_profile(profile) -> str:
    """What a profile is, in words: 'the published figures of pixel_5a', 'a profile measured on
    Intel Xeon x86_64 (hostname vm)', 'a projection to pixel_8a from ...'."""
    d = profile.device or {}
    name = d.get("name")
    if profile.source == "published":
        return f"the published figures of {name or 'an unnamed device'}"
    if profile.source == "projected":
        src = d.get("projected_from") or {}
        return f"a projection to {name or 'an unnamed device'} from {src.get('name') or _machine(src) or 'an unnamed device'}"
    machine = _machine(d) or "an unnamed machine"
    if emulation_evidence(d):
        return f"a profile measured under emulation on {machine}"
    if name:
        return f"a profile measured on {name}" + (f" ({machine})" if d.get("cpu_model") else "")
    return f"a profile measured on {machine}"


def _core_names(text: str) -> set[str]:
    return set(re.findall(r"\b([AX]\d{1,3})\b", text or ""))


def fingerprint_is(device_fp: dict, catalog_device) -> bool:
    """The fingerprint's ARM core types (Cortex-A76, ...) are exactly the catalog SoC's (A76, A55)."""
    names = " ".join(str(c.get("name") or "").replace("-", " ") for c in device_fp.get("core_types") or ())
    cores = _core_names(names)
    soc = _core_names(getattr(catalog_device, "soc", None) or "")
    return bool(cores) and cores == soc


def device_mismatch(profile, device, timing: bool = True) -> str | None:
    """Why `profile` does not describe `device` (a scenario's Device), or None when it does.
    `timing`: its times are used (refuse emulated profiles); False where only bytes are (report memory)."""
    from .scenario import load_devices
    dname = device.name
    evidence = emulation_evidence(profile.device)
    if timing and evidence:
        return f"it is {describe_profile(profile)} ({evidence[0]}): no time in it says anything about a CPU"
    catalog = load_devices()
    pname = (profile.device or {}).get("name")
    if pname:
        if same_name(pname, dname) or (dname == "custom" and dname not in catalog):
            return None
        return f"it is {describe_profile(profile)}, the scenario's device is {dname}"
    if profile.source != "measured" or dname == "host" or dname not in catalog:
        return None   # the machine atomsim runs on, or a device of one's own: its fingerprint may be it
    if fingerprint_is(profile.device or {}, catalog[dname]):
        return None
    return (f"it is {describe_profile(profile)}, the scenario's device is {dname}"
            + (f" ({catalog[dname].soc})" if catalog[dname].soc else ""))


def check_device(profile, device, allow: bool, profile_path, scenario_path=None, timing: bool = True) -> str | None:
    """Refuse (ConfigError, one line naming both and the option) a profile that does not describe
    `device`; with `allow`, return the note every output made with it must carry (None: it fits)."""
    why = device_mismatch(profile, device, timing)
    if why is None:
        return None
    of = f" (scenario {scenario_path})" if scenario_path else ""
    text = f"profile {profile_path} does not describe device {device.name}{of}: {why}"
    if not allow:
        raise ConfigError(f"{text}; measure a profile on that device (atomsim profile), or pass {FLAG} to use it anyway")
    return text


def machine_mismatch(device, machine: dict, timing: bool = True) -> str | None:
    """`device_mismatch` for a profile measured now on this machine (`validate --measure-profile`);
    `machine`: its fingerprint, at least `emulation` (atomsim.profile.fingerprint)."""
    from .profile import Profile
    here = Profile(version=1, source="measured", device=dict(machine), baseline_rss_bytes=0, modules={})
    return device_mismatch(here, device, timing)
