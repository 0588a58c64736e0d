/**
 * dynalite (an in-process DynamoDB emulator that evaluates condition and update expressions
 * like the service) on 127.0.0.1 and a free port, with an SDK client pointed at it, and the
 * counters table made as the stack makes it (adapters/aws/counters-table.ts, infra/counters.ts).
 */
import { CreateTableCommand, DescribeTableCommand, DynamoDBClient } from '@aws-sdk/client-dynamodb';
import dynalite from 'dynalite';
import { COUNTERS_KEY } from '../../adapters/aws/counters-table.ts';

export interface Dynalite {
  endpoint: string;
  client: DynamoDBClient;
  /** a fresh, empty counters table, once it is ACTIVE; its name */
  createCountersTable(): Promise<string>;
  stop(): Promise<void>;
}

let counter = 0;

export async function startDynalite(): Promise<Dynalite> {
  const server = dynalite({ createTableMs: 0, deleteTableMs: 0, updateTableMs: 0 });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as { port: number };
  const endpoint = `http://127.0.0.1:${port}`;
  const client = new DynamoDBClient({ endpoint, region: 'us-east-1', credentials: { accessKeyId: 'test', secretAccessKey: 'test' } });
  return {
    endpoint,
    client,
    async createCountersTable() {
      const name = `counters-${process.pid}-${++counter}`;
      await client.send(
        new CreateTableCommand({
          TableName: name,
          AttributeDefinitions: [{ AttributeName: COUNTERS_KEY, AttributeType: 'S' }],
          KeySchema: [{ AttributeName: COUNTERS_KEY, KeyType: 'HASH' }],
          BillingMode: 'PAY_PER_REQUEST',
        }),
      );
      // CREATING until a timer of dynalite's fires (as on DynamoDB, where it takes seconds): an
      // item written before then is a ResourceNotFoundException, which a busy machine did hit
      for (let i = 0; i < 2000; i++) {
        const { Table } = await client.send(new DescribeTableCommand({ TableName: name }));
        if (Table?.TableStatus === 'ACTIVE') return name;
        await new Promise((r) => setTimeout(r, 5));
      }
      throw new Error(`dynalite: table ${name} did not become ACTIVE`);
    },
    async stop() {
      client.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
