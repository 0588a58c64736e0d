// The logger moved to shared/logger.ts; the worker loop and the webhook modules still import
// it from here until they are split (#10), then this file goes.
export * from '../shared/logger.ts';
