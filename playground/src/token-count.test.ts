import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ApiError, type TokenCount } from '../../shared/client/client.ts';
import { TokenCounter, describeTokenCount } from './token-count.ts';

const MAX = 14;
const counted = (modelId: string, text: string): TokenCount => {
  const tokens = text.split(/\s+/).filter(Boolean).length;
  return { object: 'token_count', model: modelId, tokens, max_tokens: MAX, truncated: tokens > MAX };
};

/** A count() whose answers the test releases one by one, recording what was asked. */
function api() {
  const asked: { model: string; text: string; signal: AbortSignal; answer: (fail?: unknown) => void }[] = [];
  const count = (model: string, text: string, signal: AbortSignal) =>
    new Promise<TokenCount>((resolve, reject) => asked.push({ model, text, signal, answer: (fail) => (fail ? reject(fail) : resolve(counted(model, text))) }));
  return { asked, count };
}

const settle = () => vi.advanceTimersByTimeAsync(0);

describe('the token count text', () => {
  it('says "n / max tokens", and what is dropped when over', () => {
    expect(describeTokenCount({ tokens: 7, max_tokens: 14, truncated: false })).toEqual({ text: '7 / 14 tokens', over: false });
    expect(describeTokenCount({ tokens: 14, max_tokens: 14, truncated: false })).toEqual({ text: '14 / 14 tokens', over: false });
    expect(describeTokenCount({ tokens: 15, max_tokens: 14, truncated: true })).toEqual({ text: '15 / 14 tokens: the last 1 is dropped', over: true });
    expect(describeTokenCount({ tokens: 20, max_tokens: 14, truncated: true })).toEqual({ text: '20 / 14 tokens: the last 6 are dropped', over: true });
  });
});

describe('TokenCounter', () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it('asks once the typing pauses, for the last text only', async () => {
    const { asked, count } = api();
    const shown: (string | null)[] = [];
    const c = new TokenCounter({ count, delayMs: 250, onUnavailable: () => {} });
    for (const text of ['a', 'a red', 'a red circle']) {
      c.request('models[0].prompt', 'shapes-base', text, (t) => shown.push(t && describeTokenCount(t).text));
      await vi.advanceTimersByTimeAsync(100);
    }
    expect(asked).toEqual([]);
    await vi.advanceTimersByTimeAsync(150);
    expect(asked.map((a) => a.text)).toEqual(['a red circle']);
    asked[0]!.answer();
    await settle();
    expect(shown).toEqual(['3 / 14 tokens']);
  });

  it('never shows an older text’s late answer: its request is aborted', async () => {
    const { asked, count } = api();
    const shown: (string | null)[] = [];
    const c = new TokenCounter({ count, delayMs: 250, onUnavailable: () => {} });
    const show = (t: TokenCount | null) => shown.push(t && describeTokenCount(t).text);
    c.request('models[0].prompt', 'shapes-base', 'one two', show);
    await vi.advanceTimersByTimeAsync(250);
    c.request('models[0].prompt', 'shapes-base', 'one two three', show);
    expect(asked[0]!.signal.aborted).toBe(true);
    asked[0]!.answer();
    await vi.advanceTimersByTimeAsync(250);
    asked[1]!.answer();
    await settle();
    expect(shown).toEqual(['3 / 14 tokens']);
  });

  it('keeps each prompt field apart, and shows a count it already has at once', async () => {
    const { asked, count } = api();
    const shown: string[] = [];
    const c = new TokenCounter({ count, delayMs: 250, onUnavailable: () => {} });
    c.request('models[0].prompt', 'shapes-base', 'a b', (t) => shown.push(`base ${t!.tokens}`));
    c.request('models[1].prompt', 'shapes-layout', 'a b c', (t) => shown.push(`layout ${t!.tokens}`));
    await vi.advanceTimersByTimeAsync(250);
    expect(asked.map((a) => `${a.model}:${a.text}`)).toEqual(['shapes-base:a b', 'shapes-layout:a b c']);
    for (const a of asked) a.answer();
    await settle();
    // the cards re-render: the same texts are shown without asking again
    c.request('models[0].prompt', 'shapes-base', 'a b', (t) => shown.push(`again ${t!.tokens}`));
    expect(shown).toEqual(['base 2', 'layout 3', 'again 2']);
    expect(asked).toHaveLength(2);
    // another model's tokenizer may count the same text differently: asked again
    c.request('models[0].prompt', 'shapes-style', 'a b', () => {});
    await vi.advanceTimersByTimeAsync(250);
    expect(asked).toHaveLength(3);
  });

  it('hides every counter for good on a 501, and shows nothing for a field whose count failed otherwise', async () => {
    const { asked, count } = api();
    const shown: (number | null)[] = [];
    let unavailable = 0;
    const c = new TokenCounter({ count, delayMs: 250, onUnavailable: () => unavailable++ });
    c.request('models[0].prompt', 'shapes-base', 'a', (t) => shown.push(t && t.tokens));
    await vi.advanceTimersByTimeAsync(250);
    asked[0]!.answer(new ApiError(401, { type: 'about:blank', title: 'Unauthorized', status: 401 }));
    await settle();
    expect(shown).toEqual([null]);
    expect(c.available).toBe(true);

    c.request('models[0].prompt', 'shapes-base', 'a b', (t) => shown.push(t && t.tokens));
    c.request('models[1].prompt', 'shapes-layout', 'a b', (t) => shown.push(t && t.tokens));
    await vi.advanceTimersByTimeAsync(250);
    asked[1]!.answer(new ApiError(501, { type: 'urn:amdm:problem:token-count-unavailable', title: 'Token counting is not available here', status: 501 }));
    await settle();
    expect([unavailable, c.available, asked[2]!.signal.aborted]).toEqual([1, false, true]);
    c.request('models[0].prompt', 'shapes-base', 'a b c', () => shown.push(-1));
    await vi.advanceTimersByTimeAsync(1000);
    expect(asked).toHaveLength(3);
    expect(shown).toEqual([null]);
  });

  it('keeps a bounded number of counts, the most recently used', async () => {
    const { asked, count } = api();
    const c = new TokenCounter({ count, delayMs: 0, cacheSize: 2, onUnavailable: () => {} });
    const ask = async (text: string) => {
      c.request('models[0].prompt', 'shapes-base', text, () => {});
      await settle();
      asked.at(-1)!.answer();
      await settle();
    };
    await ask('a');
    await ask('b');
    c.request('models[0].prompt', 'shapes-base', 'a', () => {}); // used again: kept
    await ask('c'); // evicts b
    const before = asked.length;
    c.request('models[0].prompt', 'shapes-base', 'a', () => {});
    await settle();
    expect(asked.length).toBe(before);
    c.request('models[0].prompt', 'shapes-base', 'b', () => {});
    await settle();
    expect(asked.length).toBe(before + 1);
  });
});
