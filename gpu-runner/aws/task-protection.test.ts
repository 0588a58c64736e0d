/**
 * TaskProtection against a local HTTP server standing in for the ECS agent's endpoint, with
 * the real fetch: the request the agent receives and the answers it gives (shapes from the
 * ECS task scale-in protection endpoint documentation) are on the wire, not in a stub.
 */
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { TaskProtection, TaskProtectionError } from './task-protection.ts';

interface Seen {
  method: string;
  url: string;
  contentType: string | undefined;
  body: any;
}

const TASK_ARN = 'arn:aws:ecs:us-east-1:123456789012:task/amdm-gpu/0123456789abcdef';
let server: Server;
let agentUri: string;
let seen: Seen[] = [];
let answer: (seen: Seen) => { status: number; body: string; delayMs?: number } = () => ({ status: 200, body: '{}' });

const readBody = (req: IncomingMessage) =>
  new Promise<string>((resolve) => {
    let data = '';
    req.on('data', (chunk) => (data += chunk));
    req.on('end', () => resolve(data));
  });

beforeAll(async () => {
  server = createServer(async (req, res) => {
    const text = await readBody(req);
    const entry = { method: req.method!, url: req.url!, contentType: req.headers['content-type'], body: text ? JSON.parse(text) : null };
    seen.push(entry);
    const { status, body, delayMs } = answer(entry);
    setTimeout(() => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(body);
    }, delayMs ?? 0);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  // The agent URI carries a path of its own (/api/<task id>); the endpoint is appended to it.
  agentUri = `http://127.0.0.1:${(server.address() as AddressInfo).port}/api/0123456789abcdef`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

afterEach(() => {
  seen = [];
  answer = () => ({ status: 200, body: '{}' });
});

const protectedAnswer = (s: Seen) => ({
  status: 200,
  body: JSON.stringify({
    protection: {
      ExpirationDate: s.body.ProtectionEnabled ? '2026-11-26T13:30:00Z' : null,
      ProtectionEnabled: s.body.ProtectionEnabled,
      TaskArn: TASK_ARN,
    },
  }),
});

function make(uri: string | undefined = agentUri, timeoutMs?: number) {
  const lines: string[] = [];
  const protection = new TaskProtection({ agentUri: uri, fetch, log: (l) => lines.push(l), ...(timeoutMs ? { timeoutMs } : {}) });
  return { protection, lines };
}

describe('TaskProtection on ECS', () => {
  it('PUTs ProtectionEnabled and ExpiresInMinutes to the agent and returns the state', async () => {
    answer = protectedAnswer;
    const { protection, lines } = make();
    expect(protection.enabled).toBe(true);
    const state = await protection.protect(90);
    expect(seen).toEqual([
      {
        method: 'PUT',
        url: '/api/0123456789abcdef/task-protection/v1/state',
        contentType: 'application/json',
        body: { ProtectionEnabled: true, ExpiresInMinutes: 90 },
      },
    ]);
    expect(state).toEqual({ protectionEnabled: true, expirationDate: '2026-11-26T13:30:00Z', taskArn: TASK_ARN });
    expect(lines).toEqual([]);
  });

  it('clears protection with ProtectionEnabled false and no expiry', async () => {
    answer = protectedAnswer;
    const { protection } = make(`${agentUri}/`);
    const state = await protection.clear();
    expect(seen.map((s) => [s.url, s.body])).toEqual([
      ['/api/0123456789abcdef/task-protection/v1/state', { ProtectionEnabled: false }],
    ]);
    expect(state?.protectionEnabled).toBe(false);
  });

  it('sends calls one at a time in call order, so the last call decides', async () => {
    let inFlight = 0;
    let maxInFlight = 0;
    answer = (s) => {
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      setTimeout(() => inFlight--, 30);
      return { ...protectedAnswer(s), delayMs: 30 };
    };
    const { protection } = make();
    const results = await Promise.all([protection.protect(), protection.clear(), protection.protect(5)]);
    expect(seen.map((s) => s.body)).toEqual([
      { ProtectionEnabled: true, ExpiresInMinutes: 60 },
      { ProtectionEnabled: false },
      { ProtectionEnabled: true, ExpiresInMinutes: 5 },
    ]);
    expect(maxInFlight).toBe(1);
    expect(results.map((r) => r?.protectionEnabled)).toEqual([true, false, true]);
  });

  it('reports an ECS failure carried in a 200 answer, and keeps working after it', async () => {
    answer = () => ({
      status: 200,
      body: JSON.stringify({ failure: { Arn: TASK_ARN, Reason: 'TASK_NOT_VALID', Detail: 'task is stopping' } }),
    });
    const { protection } = make();
    await expect(protection.protect()).rejects.toThrow(TaskProtectionError);
    await expect(protection.protect()).rejects.toThrow(/TASK_NOT_VALID \(task is stopping\)/);
    answer = protectedAnswer;
    await expect(protection.clear()).resolves.toMatchObject({ protectionEnabled: false });
  });

  it('reports an agent error answer with its code and message', async () => {
    answer = () => ({ status: 400, body: JSON.stringify({ error: { Code: 'InvalidParameterException', Message: 'bad expiry' } }) });
    const { protection } = make();
    await expect(protection.protect()).rejects.toThrow(/agent answered 400: InvalidParameterException: bad expiry/);
  });

  it('refuses an answer that is not JSON, or a 5xx without a body it understands', async () => {
    answer = () => ({ status: 502, body: '<html>bad gateway</html>' });
    await expect(make().protection.protect()).rejects.toThrow(/not JSON/);
    answer = () => ({ status: 503, body: '{}' });
    await expect(make().protection.protect()).rejects.toThrow(/agent answered 503/);
  });

  it('gives up on an agent that does not answer within the timeout', async () => {
    answer = (s) => ({ ...protectedAnswer(s), delayMs: 500 });
    const { protection } = make(agentUri, 100);
    await expect(protection.protect()).rejects.toThrow(/no answer before the timeout/);
  });

  it('refuses an expiry outside what ECS accepts, without calling the agent', async () => {
    const { protection } = make();
    await expect(protection.protect(0)).rejects.toThrow(/expiresInMinutes=0; allowed: 1\.\.2880/);
    await expect(protection.protect(2881)).rejects.toThrow(RangeError);
    await expect(protection.protect(1.5)).rejects.toThrow(RangeError);
    expect(seen).toEqual([]);
  });

  it('refuses an agent URI that is not a URL', () => {
    expect(() => make('not a uri')).toThrow(/agentUri "not a uri" is not a URL/);
  });
});

describe('TaskProtection off ECS', () => {
  it('does nothing without ECS_AGENT_URI and says so in one line', async () => {
    let calls = 0;
    const lines: string[] = [];
    const protection = new TaskProtection({
      agentUri: undefined,
      fetch: (async () => {
        calls++;
        return new Response('{}');
      }) as typeof fetch,
      log: (l) => lines.push(l),
    });
    expect(protection.enabled).toBe(false);
    await expect(protection.protect()).resolves.toBeNull();
    await expect(protection.clear()).resolves.toBeNull();
    await expect(protection.protect(30)).resolves.toBeNull();
    expect(calls).toBe(0);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/ECS_AGENT_URI is not set/);
  });

  it('treats a blank ECS_AGENT_URI as absent', () => {
    expect(make('  ').protection.enabled).toBe(false);
  });
});
