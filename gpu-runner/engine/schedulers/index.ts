/**
 * The scheduler registry: the implementation of every name the API accepts
 * (SCHEDULER_NAMES, shared/contract/schedulers.ts). Its type asks for exactly one factory
 * per name, so a name without an implementation, or an implementation the contract does
 * not know, is a type error. The pipeline looks schedulers up here and calls them all the
 * same way (scheduler.ts).
 */
import type { SchedulerName } from '../../../shared/contract/index.ts';
import { DDIMScheduler } from './ddim.ts';
import { EulerDiscreteScheduler } from './euler.ts';
import type { SchedulerFactory } from './scheduler.ts';

export type { Scheduler, SchedulerFactory, SchedulerOutput, SchedulerStepOptions } from './scheduler.ts';

export type SchedulerRegistry = Readonly<Record<string, SchedulerFactory>>;

export const SCHEDULER_REGISTRY: { readonly [N in SchedulerName]: SchedulerFactory } = {
  ddim: (config) => new DDIMScheduler(config),
  euler: (config) => new EulerDiscreteScheduler(config),
};
