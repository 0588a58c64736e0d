// The writer thread of a SQLite database file (sqlite-database.ts, writer: 'thread'): commits
// the group-commit batches the main thread posts, so neither the transaction, nor the WAL
// fsync, nor a checkpoint ever blocks the main thread's event loop.
//
// Plain JavaScript on purpose: a worker starts as plain Node, and loading a TypeScript loader
// into every writer thread would cost more than this file does.
//
// Protocol. In: { batch: number, units: { ops: { sql, params, guard? }[], guarded: boolean }[] },
// or { close: true } last. Out: { batches: number[], commit: number, refused: [batch, unit][] }
// once those batches are durable (the refused units, whose guard changed no row, committed
// nothing), { batches: number[], error: { name, message, code } } when their transaction failed
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
const REFUSED = Symbol('refused');
// a nested transaction is a savepoint: throwing rolls back the unit alone
const guarded = db.transaction((ops) => {
  for (const op of ops) {
    const { changes } = statement(op.sql).run(...op.params);
    if (op.guard && changes === 0) throw REFUSED;
  }
});
const run = db.transaction((batches) => {
  const refused = [];
  for (const b of batches) {
    for (const [i, u] of b.units.entries()) {
      if (!u.guarded) {
        for (const op of u.ops) statement(op.sql).run(...op.params);
        continue;
      }
      try {
        guarded(u.ops);
      } catch (err) {
        if (err !== REFUSED) throw err;
        refused.push([b.batch, i]);
      }
    }
  }
  return refused;
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
      const refused = run.immediate(batches);
      parentPort.postMessage({ batches: ids, commit: ++commits, refused });
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
