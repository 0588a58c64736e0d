/**
 * GET|PUT /v1/blobs/{key}: serves the HMAC-signed URLs of the embedded stores (outputs to
 * download, uploads to write). The signature is the only credential: no API key, so the
 * URL can be handed to a browser or curl as is. On S3 deployments the route answers 404,
 * because S3 serves its own presigned URLs.
 */
import type { Context } from 'hono';
import { z } from 'zod';
import { checkImage, imageTypeOf } from '../../shared/image-header.ts';
import { BLOB_ROUTE_PREFIX, keyFromBlobPath, verifyBlobSignature } from '../../shared/signed-url.ts';
import { bodyLimit } from '../middleware/body-limit/index.ts';
import { ProblemError } from '../middleware/problem/index.ts';
import { type EdgeApp, type RouteContext, problems } from './common.ts';

/** Only uploads may be written through a signed URL, whatever a signature says. */
const UPLOAD_KEY_RE = /^tenants\/[a-z0-9][a-z0-9_-]{0,62}\/uploads\/upl_[A-Za-z0-9]{10,40}$/;

export function registerBlobRoutes(app: EdgeApp, { deps }: RouteContext): void {
  const local = deps.localBlobs;

  const forbidden = (reason: string) =>
    new ProblemError(403, {
      type: 'signed-url-refused',
      title: 'Forbidden',
      detail:
        reason === 'expired'
          ? 'the signed URL has expired; read the job again for a fresh URL'
          : 'the signed URL is not valid (altered, or for another method or object)',
      errors: [{ field: reason === 'expired' ? 'query.expires' : 'query.sig', message: reason === 'expired' ? 'expired' : 'does not match' }],
    });

  /** The key this request may act on, or a thrown 403/404. */
  const authorize = async (c: Context, method: 'GET' | 'PUT'): Promise<string> => {
    if (!local) throw new ProblemError(404, { title: 'Not found', detail: 'this deployment serves blobs from its object store directly' });
    const url = new URL(c.req.url);
    const key = keyFromBlobPath(url.pathname);
    if (key === null) throw forbidden('malformed');
    const verdict = await verifyBlobSignature(
      local.secret,
      method,
      key,
      url.searchParams.get('expires') ?? '',
      url.searchParams.get('sig') ?? '',
      Math.floor(deps.clock.now() / 1000),
    );
    if (!verdict.valid) throw forbidden(verdict.reason);
    return key;
  };

  app.get(`${BLOB_ROUTE_PREFIX}*`, async (c) => {
    const key = await authorize(c, 'GET');
    const obj = await deps.store.get(key);
    if (!obj) throw new ProblemError(404, { title: 'Not found', detail: 'the object does not exist (any more)' });
    return new Response(obj.body as Uint8Array<ArrayBuffer>, {
      status: 200,
      headers: {
        'content-type': obj.contentType,
        'content-length': String(obj.body.byteLength),
        // the URL itself expires; caches must not outlive it or share it
        'cache-control': 'private, max-age=300',
        'x-content-type-options': 'nosniff',
      },
    });
  });

  app.put(`${BLOB_ROUTE_PREFIX}*`, bodyLimit({ maxBytes: deps.limits.maxUploadBytes, what: 'upload' }), async (c) => {
    const key = await authorize(c, 'PUT');
    if (!UPLOAD_KEY_RE.test(key)) throw forbidden('bad-signature');
    const bytes = new Uint8Array(await c.req.arrayBuffer());
    const type = imageTypeOf(bytes);
    if (!type) {
      throw new ProblemError(422, {
        type: 'validation-error',
        title: 'The upload is not valid',
        detail: 'uploads must be PNG or JPEG images',
        errors: [{ field: 'body', message: 'must be the bytes of a PNG or JPEG file' }],
      });
    }
    // refused here, by its header, before any job can ask a runner to decode it
    const image = checkImage(bytes);
    if (!image.ok) {
      throw new ProblemError(422, {
        type: 'validation-error',
        title: 'The upload is not valid',
        detail: `the image is refused: ${image.message}`,
        errors: [{ field: 'body', message: image.message }],
      });
    }
    if (await deps.store.get(key)) {
      // an upload is written once (docs/architecture.md): a job may already point at it
      throw new ProblemError(409, { type: 'upload-exists', title: 'Conflict', detail: 'this upload has already been written; request a new upload URL' });
    }
    await deps.store.put(key, bytes, type);
    return c.body(null, 204);
  });

  const keyParam = z.object({ key: z.string().meta({ param: { name: 'key', in: 'path' }, example: 'tenants/acme/jobs/job_01jd8x2m3q4r5s6t7v8w9x0y1z/out/aggregated-0.png' }) });
  const signedQuery = z.object({
    method: z.enum(['GET', 'PUT']).meta({ param: { name: 'method', in: 'query' }, example: 'GET' }),
    expires: z.string().meta({ param: { name: 'expires', in: 'query' }, example: '1735733700', description: 'unix seconds' }),
    sig: z.string().meta({ param: { name: 'sig', in: 'query' }, example: 'Jx2…', description: 'HMAC-SHA256, base64url' }),
  });
  // documented only: the handlers above take a '/'-separated key, which OpenAPI path templates cannot express
  app.openAPIRegistry.registerPath({
    method: 'get',
    path: '/v1/blobs/{key}',
    tags: ['blobs'],
    summary: 'Download a blob through a signed URL',
    description: 'Output URLs in job records point here on single-node deployments. The signature is the credential; expired or altered URLs get 403.',
    request: { params: keyParam, query: signedQuery },
    responses: {
      200: { description: 'The blob', content: { 'image/png': { schema: z.string().meta({ format: 'binary' }), example: '(PNG bytes)' } } },
      ...problems(403, 404, 429),
    },
  });
  app.openAPIRegistry.registerPath({
    method: 'put',
    path: '/v1/blobs/{key}',
    tags: ['blobs'],
    summary: 'Upload a reference image through a signed URL',
    description: 'The upload_url of POST /v1/uploads points here on single-node deployments.',
    request: {
      params: keyParam,
      query: signedQuery,
      body: { content: { 'image/png': { schema: z.string().meta({ format: 'binary' }), example: '(PNG bytes)' } } },
    },
    responses: { 204: { description: 'Stored' }, ...problems(403, 404, 409, 413, 422, 429, 507) },
  });
}
