/**
 * A small IAM policy reader for tests: which actions a document allows on a given ARN.
 * It understands what our policies use (Allow/Deny, exact actions or `service:*`/`*`
 * wildcards, ARN patterns with `*`); conditions are ignored, which can only make it report
 * more access than IAM would grant, never less. That is the safe direction for "never allows X".
 */
export interface Statement {
  Sid?: string;
  Effect: 'Allow' | 'Deny';
  Action: string[];
  Resource: string[];
  Condition?: unknown;
}
export interface Document {
  Version: string;
  Statement: Statement[];
}

export function parsePolicy(policy: string | object): Document {
  const doc = (typeof policy === 'string' ? JSON.parse(policy) : policy) as any;
  const list = <T>(v: T | T[]): T[] => (Array.isArray(v) ? v : [v]);
  return {
    Version: doc.Version,
    Statement: list(doc.Statement).map((s: any) => ({
      ...s,
      Action: list(s.Action),
      Resource: list(s.Resource),
    })),
  };
}

const pattern = (glob: string) =>
  new RegExp(`^${glob.split('*').map((p) => p.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*')}$`, 'i');

/** Every action that some Allow statement grants on `arn` and no Deny takes back. */
export function actionsAllowed(doc: Document, arn: string): string[] {
  const matches = (s: Statement) => s.Resource.some((r) => pattern(r).test(arn));
  const allowed = doc.Statement.filter((s) => s.Effect === 'Allow' && matches(s)).flatMap((s) => s.Action);
  const denied = doc.Statement.filter((s) => s.Effect === 'Deny' && matches(s)).flatMap((s) => s.Action);
  return [...new Set(allowed)].filter((a) => !denied.some((d) => pattern(d).test(a)));
}
