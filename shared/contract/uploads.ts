/**
 * Reference image uploads (POST /v1/uploads): what a client asks for and the ticket it
 * gets back, a short-lived signed URL to PUT the bytes to.
 */
import { z } from 'zod';

export const CreateUploadBody = z
  .object({
    content_type: z.enum(['image/png', 'image/jpeg']).meta({ description: 'the type of the image you will PUT' }),
  })
  .strict()
  .meta({ id: 'CreateUpload' });
export type CreateUploadBody = z.output<typeof CreateUploadBody>;

export const UploadTicket = z
  .object({
    object: z.literal('upload'),
    upload_id: z.string(),
    /** PUT the image bytes here, with the given headers */
    upload_url: z.string(),
    method: z.literal('PUT'),
    headers: z.record(z.string(), z.string()),
    expires_at: z.string(),
    max_bytes: z.number().int(),
  })
  .meta({ id: 'UploadTicket' });
export type UploadTicket = z.output<typeof UploadTicket>;
