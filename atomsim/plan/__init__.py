"""Pipelines and policies: a policy turns a scenario's workload into a Plan (atomsim.schema.plan).

    plan = make_plan(scenario)                 # the scenario's policy
    plan = make_plan(scenario, "reload")      # another policy, same workload
"""
from ..errors import ConfigError, valid_names
from ..schema.plan import ModuleRef, Plan, Step  # noqa: F401
from ..schema.scenario import Scenario
from . import policies

POLICY_BUILDERS = {
    "reload": policies.reload,
    "reuse-serial": policies.reuse_serial,
    "reuse-parallel": policies.reuse_parallel,
    "baseline-resident": policies.baseline_resident,
}


def make_plan(scenario: Scenario, policy: str | None = None, clips: int | None = None) -> Plan:
    """The plan of `scenario` under `policy` (default: the scenario's). `clips` overrides the clip
    count (the runner passes the number of clips it really cut from the videos)."""
    policy = policy or scenario.policy
    if policy not in POLICY_BUILDERS:
        raise ConfigError(valid_names("policy", policy, POLICY_BUILDERS))
    n = clips if clips is not None else scenario.workload.clip_count()
    if n < 1:
        raise ConfigError("a plan needs at least one clip")
    scenario = scenario.model_copy(update={"policy": policy})
    return POLICY_BUILDERS[policy](scenario, n).validate()
