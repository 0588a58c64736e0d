/** dynalite ships no types; what test/conformance/dynalite-server.ts uses of it. */
declare module 'dynalite' {
  import type { Server } from 'node:http';
  interface DynaliteOptions {
    createTableMs?: number;
    deleteTableMs?: number;
    updateTableMs?: number;
    /** a directory for a persistent store; in memory when absent */
    path?: string;
  }
  export default function dynalite(options?: DynaliteOptions): Server;
}
