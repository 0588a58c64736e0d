/** POST /v1/uploads: a signed URL to upload a reference image to. */
import { createRoute } from '@hono/zod-openapi';
import { CreateUploadBody, UploadTicket } from '../../shared/contract/index.ts';
import { newUploadId } from '../../shared/ids.ts';
import { bodyLimit } from '../middleware/body-limit/index.ts';
import { BEARER, type EdgeApp, type RouteContext, problems } from './common.ts';

export function registerUploadRoutes(app: EdgeApp, { deps, repo }: RouteContext): void {
  const createUpload = createRoute({
    method: 'post',
    path: '/v1/uploads',
    tags: ['uploads'],
    summary: 'Get a URL to upload a reference image',
    description:
      'Returns an upload_id and a short-lived signed URL. PUT the PNG or JPEG bytes there (with the given headers, at most max_bytes), ' +
      'then use the upload_id as models[i].reference_image.upload_id.',
    security: BEARER,
    middleware: [bodyLimit({ maxBytes: deps.limits.maxSmallBodyBytes })] as const,
    request: { body: { required: true, content: { 'application/json': { schema: CreateUploadBody, example: { content_type: 'image/png' } } } } },
    responses: {
      201: {
        description: 'Upload ticket',
        content: {
          'application/json': {
            schema: UploadTicket,
            example: {
              object: 'upload',
              upload_id: 'upl_k3j9x0a8b7c6d5e4f3g2h1i0',
              upload_url: 'http://127.0.0.1:8787/v1/blobs/tenants/acme/uploads/upl_k3j9x0a8b7c6d5e4f3g2h1i0?method=PUT&expires=1735733700&sig=…',
              method: 'PUT',
              headers: { 'content-type': 'image/png' },
              expires_at: '2025-01-01T12:15:00.000Z',
              max_bytes: 10485760,
            },
          },
        },
      },
      ...problems(400, 401, 413, 415, 422, 429),
    },
  });
  app.openapi(createUpload, async (c) => {
    const { content_type } = c.req.valid('json');
    const uploadId = newUploadId(deps.random);
    const ttl = deps.limits.uploadUrlTtlSeconds;
    const key = repo.uploadKey(c.get('tenant'), uploadId);
    const url = await deps.signer.signPut(key, ttl, content_type);
    c.header('Cache-Control', 'no-store');
    return c.json(
      {
        object: 'upload' as const,
        upload_id: uploadId,
        upload_url: url,
        method: 'PUT' as const,
        // on S3 also x-amz-tagging: the upload's expiry tag, which the URL signs
        headers: { ...deps.signer.putHeaders?.(key), 'content-type': content_type },
        expires_at: new Date(deps.clock.now() + ttl * 1000).toISOString(),
        max_bytes: deps.limits.maxUploadBytes,
      },
      201,
    );
  });
}
