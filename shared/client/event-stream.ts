/**
 * A text/event-stream reader over fetch(), for clients that must send an Authorization
 * header (the browser's EventSource cannot). Parses as the WHATWG HTML standard says
 * (section "Server-sent events", interpreting an event stream): lines end in CRLF, LF or
 * CR; `:` starts a comment; `data` lines join with "\n"; an empty line dispatches.
 *
 * Web-standard APIs only: the playground bundles it for the browser and the CLI runs it on
 * Node's fetch.
 */

export interface ServerSentEvent {
  /** the `event:` field, "message" when absent */
  event: string;
  data: string;
  id?: string;
  /** the `retry:` field, milliseconds */
  retry?: number;
}

/** A comment line (the server's keep-alive), surfaced so callers can see the stream is alive. */
export interface EventStreamComment {
  comment: string;
}

export class EventStreamParser {
  private buffer = '';
  private data: string[] = [];
  private event = '';
  private id: string | undefined;
  private retry: number | undefined;
  private started = false;

  /** Feed decoded text; returns the events and comments completed by it, in order. */
  push(text: string): (ServerSentEvent | EventStreamComment)[] {
    if (!this.started && text.length > 0) {
      this.started = true;
      if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    }
    this.buffer += text;
    const out: (ServerSentEvent | EventStreamComment)[] = [];
    for (;;) {
      const m = /\r\n|\r|\n/.exec(this.buffer);
      if (!m) break;
      // a CR at the very end may be the first half of a CRLF split across chunks
      if (m[0] === '\r' && m.index === this.buffer.length - 1) break;
      const line = this.buffer.slice(0, m.index);
      this.buffer = this.buffer.slice(m.index + m[0].length);
      const item = this.line(line);
      if (item) out.push(item);
    }
    return out;
  }

  /** The stream ended: a CR held back as a possible CRLF half was a line end after all. */
  end(): (ServerSentEvent | EventStreamComment)[] {
    if (!this.buffer.endsWith('\r')) return [];
    const line = this.buffer.slice(0, -1);
    this.buffer = '';
    const item = this.line(line);
    return item ? [item] : [];
  }

  private line(line: string): ServerSentEvent | EventStreamComment | null {
    if (line === '') {
      // dispatch; a block without data lines is no event (the standard drops it)
      const ev: ServerSentEvent | null =
        this.data.length > 0
          ? { event: this.event || 'message', data: this.data.join('\n'), ...(this.id !== undefined ? { id: this.id } : {}), ...(this.retry !== undefined ? { retry: this.retry } : {}) }
          : null;
      this.data = [];
      this.event = '';
      this.retry = undefined;
      return ev;
    }
    if (line.startsWith(':')) return { comment: line.slice(1).trimStart() };
    const colon = line.indexOf(':');
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'data') this.data.push(value);
    else if (field === 'event') this.event = value;
    else if (field === 'id' && !value.includes('\0')) this.id = value;
    else if (field === 'retry' && /^\d+$/.test(value)) this.retry = Number(value);
    return null;
  }
}

export const isComment = (x: ServerSentEvent | EventStreamComment): x is EventStreamComment => 'comment' in x;

/**
 * Events and comments of a response body, in order, until the server closes it or `stop`
 * is aborted (which cancels the body even while a read is pending).
 */
export async function* readEventStream(body: ReadableStream<Uint8Array>, stop?: AbortSignal): AsyncGenerator<ServerSentEvent | EventStreamComment> {
  const parser = new EventStreamParser();
  const decoder = new TextDecoder();
  const reader = body.getReader();
  const onStop = () => void reader.cancel().catch(() => {});
  if (stop?.aborted) onStop();
  stop?.addEventListener('abort', onStop, { once: true });
  let ended = false;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) {
        ended = true;
        break;
      }
      yield* parser.push(decoder.decode(value, { stream: true }));
    }
    // the standard discards an event that the stream ended in the middle of
    yield* parser.push(decoder.decode());
    yield* parser.end();
  } finally {
    stop?.removeEventListener('abort', onStop);
    // the consumer stopped early (break, throw): stop the download too. Not after the end:
    // browsers would report the finished request as aborted.
    if (!ended) await reader.cancel().catch(() => {});
    reader.releaseLock();
  }
}
