/**
 * Retention tags on the wire. fauxqs accepts PutObject with x-amz-tagging but implements no
 * tagging API (GetObjectTagging answers with the object body), so the tag is checked where it
 * matters for S3: in the PutObject request as the server received it, captured by a hook on
 * the emulator's own HTTP server.
 */
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { buildApp } from 'fauxqs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { linkedStore } from './links.ts';
import { EXPIRING_OBJECT_TAG, isJobOutputKey, isUploadKey, retentionTags } from './retention.ts';
import { encodeTagging, S3Store, StoreAccessDeniedError } from './s3-store.ts';

interface Seen {
  method: string;
  url: string;
  headers: Record<string, string | string[] | undefined>;
}

let app: ReturnType<typeof buildApp>;
let s3: S3Client;
let bucket: string;
const seen: Seen[] = [];
/** bucket paths (/bucket/key) answered with 403 AccessDenied */
const denied = new Set<string>();

beforeAll(async () => {
  app = buildApp({ logger: false });
  app.addHook('onRequest', async (req, reply) => {
    seen.push({ method: req.method, url: req.url, headers: { ...req.headers } });
    // what S3 answers a GetObject of a missing key when the caller lacks s3:ListBucket
    if (req.method === 'GET' && denied.has(decodeURIComponent(req.url.split('?')[0]!))) {
      return reply
        .code(403)
        .header('content-type', 'application/xml')
        .send('<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code><Message>Access Denied</Message><RequestId>R1</RequestId><HostId>H1</HostId></Error>');
    }
  });
  const endpoint = await app.listen({ port: 0, host: '127.0.0.1' });
  s3 = new S3Client({ endpoint, region: 'us-east-1', credentials: { accessKeyId: 'test', secretAccessKey: 'test' }, forcePathStyle: true });
  bucket = `tags-${process.pid}`;
  await s3.send(new CreateBucketCommand({ Bucket: bucket }));
});

afterAll(async () => {
  s3?.destroy();
  await app?.close();
});

const putsOf = (key: string) => seen.filter((r) => r.method === 'PUT' && decodeURIComponent(r.url.split('?')[0]!) === `/${bucket}/${key}`);

describe('S3Store retention tags', () => {
  it('the store built from the links sends amdm-expire=job-output with every job output and upload, and no tag with anything else', async () => {
    const store = linkedStore({ Store: { name: bucket } }, s3);
    const output = 'tenants/acme/jobs/job_01/out/aggregated-0.png';
    const latent = 'tenants/acme/jobs/job_01/out/shapes-base-0.f32';
    // an inline reference image, written by the edge
    const upload = 'tenants/acme/uploads/u1';
    const others = ['tenants/acme/jobs/job_01/status.json', 'tenants/acme/usage/2026-01-01/job_01.json', 'apikeys/abc.json'];
    for (const key of [output, latent, upload, ...others]) await store.put(key, new Uint8Array([1, 2, 3]), 'application/octet-stream');

    for (const key of [output, latent, upload]) {
      const [put, ...more] = putsOf(key);
      expect(more).toEqual([]);
      expect(put!.headers['x-amz-tagging']).toBe(`${EXPIRING_OBJECT_TAG.key}=${EXPIRING_OBJECT_TAG.value}`);
      // signed, so no proxy can strip it without breaking the request
      expect(String(put!.headers.authorization)).toMatch(/SignedHeaders=[^,]*x-amz-tagging/);
    }
    for (const key of others) {
      expect(putsOf(key)).toHaveLength(1);
      expect(putsOf(key)[0]!.headers['x-amz-tagging']).toBeUndefined();
    }
    // and the object is stored as usual
    expect((await store.get(output))?.body).toEqual(new Uint8Array([1, 2, 3]));
  });

  it('a store without a tag rule sends no tagging header', async () => {
    const store = new S3Store({ client: s3, bucket });
    await store.put('tenants/acme/jobs/job_02/out/aggregated-0.png', 'x');
    expect(putsOf('tenants/acme/jobs/job_02/out/aggregated-0.png')[0]!.headers['x-amz-tagging']).toBeUndefined();
  });

  it('a presigned upload PUT signs the expiry tag as a header, which the uploader must send', async () => {
    const store = linkedStore({ Store: { name: bucket } }, s3);
    const key = 'tenants/acme/uploads/upl_02';
    const url = new URL(await store.signedPutUrl(key, 120, 'image/png'));
    expect(url.searchParams.get('X-Amz-SignedHeaders')).toBe('content-type;host;x-amz-tagging');
    // a query parameter S3 might ignore is never the carrier
    expect([...url.searchParams.keys()].filter((k) => /tagging/i.test(k))).toEqual([]);
    const headers: Record<string, string> = { ...store.signedPutHeaders(key), 'content-type': 'image/png' };
    expect(headers['x-amz-tagging']).toBe(`${EXPIRING_OBJECT_TAG.key}=${EXPIRING_OBJECT_TAG.value}`);
    expect((await fetch(url, { method: 'PUT', body: new Uint8Array([9]), headers })).status).toBe(200);
    expect(putsOf(key)[0]!.headers['x-amz-tagging']).toBe(`${EXPIRING_OBJECT_TAG.key}=${EXPIRING_OBJECT_TAG.value}`);
    // keys without tags sign Content-Type only and need no other header
    expect(new URL(await store.signedPutUrl('tenants/acme/jobs/j/request.json', 60, 'application/json')).searchParams.get('X-Amz-SignedHeaders')).toBe('content-type;host');
    expect(store.signedPutHeaders('tenants/acme/jobs/j/request.json')).toEqual({});
  });

  it('matches only files directly in a job\'s out/ folder, and uploads', () => {
    expect(isJobOutputKey('tenants/t/jobs/j/out/a-0.png')).toBe(true);
    expect(isUploadKey('tenants/t/uploads/upl_1')).toBe(true);
    expect(isUploadKey('tenants/t/uploads/upl_1/x')).toBe(false);
    expect(retentionTags('tenants/t/uploads/upl_1')).toEqual({ [EXPIRING_OBJECT_TAG.key]: EXPIRING_OBJECT_TAG.value });
    // the fleet's start records (gpu-runner/aws/start-failure.ts) expire too
    expect(retentionTags('fleet/start-failures/000123-task.json')).toEqual({ [EXPIRING_OBJECT_TAG.key]: EXPIRING_OBJECT_TAG.value });
    expect(retentionTags('fleet/starts/000123-task.json')).toEqual({ [EXPIRING_OBJECT_TAG.key]: EXPIRING_OBJECT_TAG.value });
    expect(retentionTags('fleet/other/x')).toBeNull();
    for (const key of ['tenants/t/jobs/j/out/', 'tenants/t/jobs/j/out/x/y.png', 'tenants/t/jobs/j/status.json', 'tenants/t/out/a.png', 'xtenants/t/jobs/j/out/a.png', 'tenants/t/jobs/j/webhook/0001.json']) {
      expect(isJobOutputKey(key), key).toBe(false);
    }
    expect(retentionTags('tenants/t/jobs/j/status.json')).toBeNull();
  });

  it('encodes tag sets as S3 wants them and refuses ones S3 would reject', () => {
    expect(encodeTagging({ a: 'b c', 'k:x': 'v/w' }, 'k')).toBe('a=b%20c&k%3Ax=v%2Fw');
    expect(encodeTagging({}, 'k')).toBeUndefined();
    expect(() => encodeTagging({ 'bad*key': 'v' }, 'k')).toThrow(/not a valid S3 tag/);
    expect(() => encodeTagging(Object.fromEntries(Array.from({ length: 11 }, (_, i) => [`k${i}`, 'v'])), 'k')).toThrow(/at most 10/);
    expect(() => new S3Store({ client: s3, bucket, tags: 'x' as never })).toThrow(/tags must be a function/);
  });
});

describe('S3Store reads that S3 refuses', () => {
  it('an AccessDenied on a read is an error that names the key and s3:ListBucket, never "absent"', async () => {
    const store = new S3Store({ client: s3, bucket });
    const key = 'tenants/acme/jobs/job_03/cancel.json';
    denied.add(`/${bucket}/${key}`);
    const read = store.get(key);
    await expect(read).rejects.toBeInstanceOf(StoreAccessDeniedError);
    await expect(store.get(key)).rejects.toThrow(new RegExp(`s3:GetObject on s3://${bucket}/${key}.*s3:ListBucket on arn:aws:s3:::${bucket}`));
    // a key that is really missing (404) still reads as absent
    expect(await store.get('tenants/acme/jobs/job_03/status.json')).toBeNull();
  });
});

describe('S3Store presigned URL lifetimes', () => {
  const storeWith = (credentials: { accessKeyId: string; secretAccessKey: string; sessionToken?: string; expiration?: Date }) =>
    new S3Store({ client: new S3Client({ region: 'us-east-1', credentials, endpoint: 'http://s3.invalid', forcePathStyle: true }), bucket });

  it('never outlive the credentials that sign them', async () => {
    const expiring = storeWith({ accessKeyId: 'a', secretAccessKey: 'b', sessionToken: 't', expiration: new Date(Date.now() + 10 * 60_000) });
    const ttl = await expiring.presignableSeconds(3600);
    expect(ttl).toBeLessThanOrEqual(9 * 60);
    expect(ttl).toBeGreaterThan(8 * 60);
    expect(new URL(await expiring.signedGetUrl('k', ttl)).searchParams.get('X-Amz-Expires')).toBe(String(ttl));
  });

  it('cap temporary credentials of unknown lifetime (a Lambda role\'s) at the edge\'s own URL lifetime', async () => {
    expect(await storeWith({ accessKeyId: 'a', secretAccessKey: 'b', sessionToken: 't' }).presignableSeconds(3600)).toBe(900);
    expect(await storeWith({ accessKeyId: 'a', secretAccessKey: 'b', sessionToken: 't' }).presignableSeconds(300)).toBe(300);
  });

  it('keep the wanted lifetime with long-term keys', async () => {
    expect(await storeWith({ accessKeyId: 'a', secretAccessKey: 'b' }).presignableSeconds(3600)).toBe(3600);
  });
});
