/**
 * The one logger of the edge, the runner and the single node: one JSON object per line, with
 * the time and the component, so the lines of processes that share a terminal or a log group
 * stay greppable and parseable. Errors and warnings go to stderr (console.error, console.warn:
 * the Lambda runtime takes the level from the method), the rest to stdout. Web-standard only:
 * the edge runs it on Lambda.
 */
export interface Logger {
  error(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
}

export function jsonLogger(component: string, opts: { quiet?: boolean } = {}): Logger {
  const line = (level: string, msg: string, fields?: Record<string, unknown>) =>
    JSON.stringify({ t: new Date().toISOString(), level, component, msg, ...fields });
  return {
    error: (msg, fields) => console.error(line('error', msg, fields)),
    warn: (msg, fields) => console.warn(line('warn', msg, fields)),
    info: (msg, fields) => {
      if (!opts.quiet) console.log(line('info', msg, fields));
    },
  };
}

export const silentLogger: Logger = { error() {}, warn() {}, info() {} };

/** An error as a log field: message and stack, never the whole object graph. */
export function errorFields(err: unknown): Record<string, unknown> {
  const e = err as { name?: string; message?: string; stack?: string };
  return { error: e?.message ?? String(err), error_name: e?.name, stack: e?.stack };
}
