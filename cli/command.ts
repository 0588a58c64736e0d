export interface CliCommand {
  /** one line: "name ARGS [--options]  what it does" */
  usage: string;
  /** returns the exit code: 0 ok, 1 run-time failure, 2 bad usage or input */
  run(args: string[]): Promise<number>;
}

/** A usage or input error: printed as one line, exit code 2. */
export class UsageError extends Error {
  override name = 'UsageError';
}
