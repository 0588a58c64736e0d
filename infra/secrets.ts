/**
 * Secrets, set per stage with `npx sst secret set <Name> <value> --stage <stage>`.
 *
 * KeyPepper: the HMAC key under which API keys are hashed into apikeys/{hash}.json; without
 * it a leaked bucket listing cannot be turned back into working keys. Changing it invalidates
 * every issued key.
 * WebhookSigningSecret: the Standard Webhooks secret ("whsec_" + base64) that signs deliveries.
 *
 * The edge links both. The runner needs only the signing secret (its webhook dispatcher
 * signs deliveries); it gets it as an ECS secret from an SSM SecureString (infra/gpu.ts),
 * never in the task definition's plain environment, which anyone with
 * ecs:DescribeTaskDefinition can read. It arrives as SST_RESOURCE_WebhookSigningSecret, so
 * `Resource.WebhookSigningSecret.value` reads it as on Lambda.
 */
export function createSecrets() {
  return {
    keyPepper: new sst.Secret('KeyPepper'),
    webhookSigningSecret: new sst.Secret('WebhookSigningSecret'),
  };
}
