"""Pipelines and policies: a pipeline and a policy turn a scenario's workload into a Plan
(atomsim.schema.plan).

    plan = make_plan(scenario)                 # the scenario's pipeline and policy
    plan = make_plan(scenario, "reload")      # another policy, same workload
    plan = make_plan(scenario, "budget-cost", profile=profile)   # budget policies plan with a profile
"""
from ..errors import ConfigError, valid_names
from ..schema.pipeline import Pipeline, scenario_pipeline
from ..schema.plan import ModuleRef, Plan, Step  # noqa: F401
from ..schema.scenario import Scenario
from ..schema.names import BUDGET_POLICIES
from . import budget, policies

POLICY_BUILDERS = {
    "reload": policies.reload,
    "reuse-serial": policies.reuse_serial,
    "reuse-parallel": policies.reuse_parallel,
    "baseline-resident": policies.baseline_resident,
}


def plan_pipeline(scenario: Scenario, policy: str) -> Pipeline:
    """The scenario's pipeline with the modules `policy` runs: the scenario's `variant`, or with
    `variant: auto` the policy's default (reload and baseline-resident: `baseline`)."""
    pipe = scenario_pipeline(scenario)
    variant = scenario.variant
    if variant == "auto":
        variant = policies.DEFAULT_VARIANT.get(policy)
    elif variant != "none" and variant not in pipe.variants:
        raise ConfigError(f"scenario {scenario.name!r}: field 'variant': "
                          + valid_names(f"variant of pipeline {pipe.name!r}", variant, [*pipe.variants, "auto", "none"]))
    return pipe.with_variant(None if variant == "none" else variant)


def make_plan(scenario: Scenario, policy: str | None = None, clips: int | None = None, profile=None) -> Plan:
    """The plan of `scenario` under `policy` (default: the scenario's). `clips` overrides the clip
    count (the runner passes the number of clips it really cut from the videos). A budget policy
    plans with `profile` (default: the scenario's profile file); the others ignore it."""
    policy = policy or scenario.policy
    if policy not in POLICY_BUILDERS and policy not in BUDGET_POLICIES:
        raise ConfigError(valid_names("policy", policy, [*POLICY_BUILDERS, *BUDGET_POLICIES]))
    n = clips if clips is not None else scenario.workload.clip_count()
    if n < 1:
        raise ConfigError("a plan needs at least one clip")
    scenario = scenario.model_copy(update={"policy": policy})
    if policy in BUDGET_POLICIES:
        if profile is None and scenario.profile:
            from ..schema.profile import load_profile
            profile = load_profile(scenario.profile)
        return budget.budget_plan(scenario, plan_pipeline(scenario, policy), n, profile).validate()
    return POLICY_BUILDERS[policy](scenario, plan_pipeline(scenario, policy), n).validate()
