/**
 * The scheduler names the API accepts, listed once: the request and job-spec schemas, the
 * model catalog and the models route's example read them, and the engine's registry
 * (gpu-runner/engine/schedulers/index.ts) must implement exactly these (its type asks for
 * one factory per name). The registry cannot live here with them: the contract is bundled
 * into the edge Lambda, which carries no engine code.
 *
 * vpLatents: the scheduler's latents are DDIM's variance-preserving x_t, the space AMDM's
 * deviation step (the mu formula) is defined on; only such a scheduler can aggregate
 * several models.
 */
export const SCHEDULERS = {
  ddim: { vpLatents: true },
  euler: { vpLatents: false },
} as const satisfies Record<string, { vpLatents: boolean }>;

export type SchedulerName = keyof typeof SCHEDULERS;

export const SCHEDULER_NAMES = Object.keys(SCHEDULERS) as [SchedulerName, ...SchedulerName[]];

/** the schedulers that can aggregate several models */
export const AGGREGATING_SCHEDULERS: readonly SchedulerName[] = SCHEDULER_NAMES.filter((n) => SCHEDULERS[n].vpLatents);
