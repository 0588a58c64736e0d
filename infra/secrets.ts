/**
 * Secrets, set per stage with `npx sst secret set <Name> <value> --stage <stage>`.
 *
 * KeyPepper: the HMAC key under which API keys are hashed into apikeys/{hash}.json; without
 * it a leaked bucket listing cannot be turned back into working keys. Changing it invalidates
 * every issued key.
 * WebhookSigningSecret: the Standard Webhooks secret ("whsec_" + base64) that signs deliveries.
 *
 * Only the edge links them. The runner's task definition must not carry secret values in its
 * plain environment (anyone with ecs:DescribeTaskDefinition could read them), so nothing
 * secret is wired to the fleet.
 */
export function createSecrets() {
  return {
    keyPepper: new sst.Secret('KeyPepper'),
    webhookSigningSecret: new sst.Secret('WebhookSigningSecret'),
  };
}
