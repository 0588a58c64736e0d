import { describe, expect, it } from 'vitest';
import { EventStreamParser, readEventStream } from './event-stream.ts';

describe('EventStreamParser', () => {
  it('joins data lines, keeps event, id and retry, and surfaces comments', () => {
    const p = new EventStreamParser();
    expect(p.push('\ufeff: keep-alive\n\nretry: 2000\nevent: job\ndata: {"a":\ndata:1}\nid: 7\n\n')).toEqual([
      { comment: 'keep-alive' },
      { event: 'job', data: '{"a":\n1}', id: '7', retry: 2000 },
    ]);
  });

  it('handles CRLF and CR line ends, also when a CRLF is split across chunks', () => {
    const p = new EventStreamParser();
    expect(p.push('data: one\r')).toEqual([]);
    expect(p.push('\n\r\ndata: two\r\r')).toEqual([{ event: 'message', data: 'one' }]);
    // the last CR could still be half of a CRLF; only the end of the stream settles it
    expect(p.end()).toEqual([{ event: 'message', data: 'two' }]);
  });

  it('drops blocks without data and fields it does not know; a bad retry is ignored', () => {
    const p = new EventStreamParser();
    expect(p.push('event: job\n\nretry: soon\nfoo: bar\ndata\n\n')).toEqual([{ event: 'message', data: '' }]);
  });

  it('reads a byte stream split in the middle of a multi-byte character, and drops an unfinished event at the end', async () => {
    const bytes = new TextEncoder().encode('data: café\n\ndata: cut off');
    const body = new ReadableStream<Uint8Array>({
      start(c) {
        c.enqueue(bytes.slice(0, 9)); // inside "é"
        c.enqueue(bytes.slice(9));
        c.close();
      },
    });
    const items = [];
    for await (const item of readEventStream(body)) items.push(item);
    expect(items).toEqual([{ event: 'message', data: 'café' }]);
  });
});
