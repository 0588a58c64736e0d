import { afterAll, describe, expect, it } from 'vitest';
import { hasLink, LinkError, linkedAdmission, linkedQueue, linkedRateLimiter, linkedStore, linkedString } from './links.ts';
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { MemoryStore } from '../memory/memory-store.ts';
import type { SQSClient } from '@aws-sdk/client-sqs';
import type { S3Client } from '@aws-sdk/client-s3';

const saved = { ...process.env };
afterAll(() => {
  process.env = saved;
});

describe('reading SST links', () => {
  it('reads the links through the sst SDK Resource, from SST_RESOURCE_* variables as SST sets them', async () => {
    // Resource loads the environment on first use, once per process: set it before
    process.env.SST_RESOURCE_App = JSON.stringify({ name: 'amdm', stage: 'test' });
    process.env.SST_RESOURCE_Store = JSON.stringify({ name: 'amdm-test-store' });
    process.env.SST_RESOURCE_JobQueue = JSON.stringify({ url: 'https://sqs.us-east-1.amazonaws.com/123456789012/jobs' });
    process.env.SST_RESOURCE_KeyPepper = JSON.stringify({ value: 'pepper-pepper-pepper' });
    const { Resource } = await import('sst/resource');
    expect(hasLink(Resource, 'store')).toBe(true);
    expect(hasLink(Resource, 'webhooks')).toBe(false);
    expect(linkedString(Resource, 'store')).toBe('amdm-test-store');
    expect(linkedString(Resource, 'keyPepper')).toBe('pepper-pepper-pepper');
    expect(() => linkedString(Resource, 'webhooks')).toThrow(/SST link "WebhookQueue" is missing \(no SST_RESOURCE_WebhookQueue/);
    const queue = linkedQueue(Resource, 'jobs', { send: async () => ({}) } as unknown as SQSClient);
    await queue.close();
    expect(() => linkedStore(Resource, { send: async () => ({}) } as unknown as S3Client)).not.toThrow();
  });

  it('builds the shared counters from the Counters link, and names it when it is missing', () => {
    const dynamo = { send: async () => ({}) } as unknown as DynamoDBClient;
    expect(() => linkedAdmission({ Counters: { name: 'amdm-test-counters' } }, dynamo, new MemoryStore())).not.toThrow();
    expect(() => linkedRateLimiter({ Counters: { name: 'amdm-test-counters' } }, dynamo, { limit: 100, windowSeconds: 5 })).not.toThrow();
    expect(() => linkedAdmission({}, dynamo, new MemoryStore())).toThrow(/SST link "Counters" is missing/);
  });

  it('names a link whose property is missing or empty', () => {
    expect(() => linkedString({ Store: {} }, 'store')).toThrow(LinkError);
    expect(() => linkedString({ Store: { name: '' } }, 'store')).toThrow(/"Store" has no name/);
    expect(() => linkedString({ KeyPepper: 'x' }, 'keyPepper')).toThrow(/"KeyPepper" has no value/);
  });
});
