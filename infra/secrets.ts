/**
 * Secrets, set per stage with `npx sst secret set <Name> <value> --stage <stage>`.
 *
 * KeyPepper: the HMAC key under which API keys are hashed into apikeys/{hash}.json; without
 * it a leaked bucket listing cannot be turned back into working keys. Changing it invalidates
 * every issued key.
 * WebhookSigningSecret: the Standard Webhooks secret ("whsec_" + base64) that signs deliveries.
 *
 * Each is linked to the one function that uses it: the pepper to the edge (it verifies keys),
 * the signing secret to the webhook Lambda (it signs deliveries). The GPU runner holds
 * neither: it enqueues webhooks and never delivers them. Operators read the pepper with their
 * own credentials under `npx sst shell` (`amdm keys`).
 */
export function createSecrets() {
  return {
    keyPepper: new sst.Secret('KeyPepper'),
    webhookSigningSecret: new sst.Secret('WebhookSigningSecret'),
  };
}
