/**
 * Token counts shown beside the prompts as the user types (POST /v1/models/{id}/tokens).
 * Written here rather than taken from a debounce library because the page needs more than
 * a delay: per prompt field, the request in flight is aborted when the text changes again,
 * a late answer for an older text is never shown, counts already known are shown at once
 * (the cards re-render on every model change), and a 501 (a deployment whose API has no
 * tokenizer, AWS) hides every counter for the rest of the session instead of asking again.
 */
import type { TokenCount } from '../../shared/client/client.ts';

/** "7 / 14 tokens"; over the limit it says what is dropped. */
export function describeTokenCount(c: Pick<TokenCount, 'tokens' | 'max_tokens' | 'truncated'>): { text: string; over: boolean } {
  const base = `${c.tokens} / ${c.max_tokens} tokens`;
  if (!c.truncated) return { text: base, over: false };
  const dropped = c.tokens - c.max_tokens;
  return { text: `${base}: the last ${dropped} ${dropped === 1 ? 'is' : 'are'} dropped`, over: true };
}

export interface TokenCounterOptions {
  count: (modelId: string, text: string, signal: AbortSignal) => Promise<TokenCount>;
  /** quiet time after the last keystroke before asking */
  delayMs?: number;
  /** counts kept, so re-rendered fields and retyped texts ask nothing */
  cacheSize?: number;
  /** the API cannot count here (501): hide every counter */
  onUnavailable: () => void;
}

interface Pending {
  timer: ReturnType<typeof setTimeout> | null;
  abort: AbortController | null;
}

export class TokenCounter {
  private readonly delayMs: number;
  private readonly cacheSize: number;
  private readonly cache = new Map<string, TokenCount>();
  private readonly pending = new Map<string, Pending>();
  /** false once the API said it cannot count */
  available = true;

  constructor(private readonly o: TokenCounterOptions) {
    this.delayMs = o.delayMs ?? 250;
    this.cacheSize = o.cacheSize ?? 200;
  }

  /**
   * Count `text` for the prompt field `field` (its API path), then call `show` with the
   * count, or with null when there is none to show (the request failed). A newer request
   * for the same field replaces this one.
   */
  request(field: string, modelId: string, text: string, show: (c: TokenCount | null) => void): void {
    this.cancel(field);
    if (!this.available) return;
    const key = `${modelId}\u0000${text}`;
    const known = this.cache.get(key);
    if (known) {
      this.remember(key, known);
      show(known);
      return;
    }
    const p: Pending = { timer: null, abort: null };
    this.pending.set(field, p);
    p.timer = setTimeout(() => {
      p.timer = null;
      p.abort = new AbortController();
      const signal = p.abort.signal;
      this.o.count(modelId, text, signal).then(
        (c) => {
          if (signal.aborted) return;
          this.remember(key, c);
          this.pending.delete(field);
          show(c);
        },
        (err: unknown) => {
          if (signal.aborted) return;
          this.pending.delete(field);
          if ((err as { status?: number }).status === 501) {
            this.unavailable();
            return;
          }
          show(null);
        },
      );
    }, this.delayMs);
  }

  /** Forget the field's pending request, if any (its input is gone or changed). */
  cancel(field: string): void {
    const p = this.pending.get(field);
    if (!p) return;
    if (p.timer !== null) clearTimeout(p.timer);
    p.abort?.abort();
    this.pending.delete(field);
  }

  private unavailable(): void {
    if (!this.available) return;
    this.available = false;
    for (const field of [...this.pending.keys()]) this.cancel(field);
    this.o.onUnavailable();
  }

  private remember(key: string, c: TokenCount): void {
    this.cache.delete(key);
    this.cache.set(key, c);
    // a Map iterates in insertion order: the first key is the least recently counted
    if (this.cache.size > this.cacheSize) this.cache.delete(this.cache.keys().next().value!);
  }
}
