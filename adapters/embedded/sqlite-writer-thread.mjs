// The writer thread of a SQLite database file (sqlite-database.ts, writer: 'thread'): commits
// the group-commit batches the main thread posts, so neither the transaction, nor the WAL
// fsync, nor a checkpoint ever blocks the main thread's event loop.
//
// Plain JavaScript on purpose: a worker starts as plain Node, and loading a TypeScript loader
// into every writer thread would cost more than this file does.
//
// Protocol. In: { batch: number, ops: { sql: string, params: unknown[] }[] }, or
// { close: true } last. Out: { batches: number[], commit: number } once those batches are
// durable, { batches: number[], error: { name, message, code } } when their transaction failed
// (none of them was committed), { closed: true } after close.
import { parentPort, receiveMessageOnPort, workerData } from 'node:worker_threads';
import { createRequire } from 'node:module';

const Database = createRequire(import.meta.url)(workerData.driver);
const db = new Database(workerData.file, { timeout: workerData.busyTimeoutMs });
// the main thread set WAL mode on the file; synchronous is per connection
db.pragma('synchronous = FULL');

/** @type {Map<string, import('better-sqlite3').Statement>} */
const statements = new Map();
const statement = (sql) => {
  let s = statements.get(sql);
  if (!s) statements.set(sql, (s = db.prepare(sql)));
  return s;
};
const run = db.transaction((batches) => {
  for (const b of batches) for (const op of b.ops) statement(op.sql).run(...op.params);
});
let commits = 0;
let closing = false;

parentPort.on('message', (first) => {
  // every batch already waiting joins this transaction: the batch size follows the load
  const batches = [];
  for (let m = first; m; m = receiveMessageOnPort(parentPort)?.message) {
    if (m.close) closing = true;
    else batches.push(m);
  }
  if (batches.length > 0) {
    const ids = batches.map((b) => b.batch);
    try {
      run.immediate(batches);
      parentPort.postMessage({ batches: ids, commit: ++commits });
    } catch (err) {
      parentPort.postMessage({ batches: ids, error: { name: err?.name ?? 'Error', message: String(err?.message ?? err), code: err?.code } });
    }
  }
  if (closing) {
    db.close();
    parentPort.postMessage({ closed: true });
    parentPort.close();
  }
});
