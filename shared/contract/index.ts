export * from './job-request.ts';
export * from './job-spec.ts';
export * from './job-record.ts';
export * from './models.ts';
export * from './uploads.ts';
export * from './schedulers.ts';
export * from './field-errors.ts';
export * from './warnings.ts';
