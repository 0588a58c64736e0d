/**
 * Live previews of a running job, from the sampler to the store: the latest frame, and the
 * frame of the window's last step (the models just pulled together, kept because on a fast
 * model the window is over before anyone polls), in `preview.json` beside the job's
 * status (shared/job-repository.ts). A separate object, overwritten at most every
 * `intervalMs`, so status.json stays small and its writes stay cheap; the edge reads it
 * only while the job runs and streams each new frame as an `event: preview`.
 */
import type { JobRepository, StoredPreview, StoredPreviewFrame } from '../shared/job-repository.ts';
import type { PreviewFrame } from './engine/types.ts';
import { type Logger, errorFields } from '../shared/logger.ts';

export interface PreviewWriterOptions {
  repo: JobRepository;
  tenant: string;
  jobId: string;
  intervalMs: number;
  clock: () => number;
  logger: Logger;
  /** false once the run lost its lease: nothing more may be written for it */
  mayWrite: () => boolean;
}

export class PreviewWriter {
  private preview: StoredPreview = { v: 1, latest: null, window_end: null };
  private seq = 0;
  private lastWrite = -Infinity;
  private dirty = false;
  private writing: Promise<void> | null = null;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private closed = false;

  constructor(private readonly o: PreviewWriterOptions) {}

  offer(frame: PreviewFrame): void {
    if (this.closed) return;
    // increasing across runs of one job too (a retry starts again at its first frame)
    this.seq = Math.max(this.seq + 1, this.o.clock());
    const stored = toStored(frame, this.seq, this.o.clock());
    this.preview = { ...this.preview, latest: stored, ...(frame.windowEnd ? { window_end: stored } : {}) };
    this.dirty = true;
    const wait = this.lastWrite + this.o.intervalMs - this.o.clock();
    if (frame.windowEnd || wait <= 0) this.flush();
    else this.timer ??= setTimeout(() => this.flush(), wait);
  }

  /** Stop: the job is finished (its result matters now, not a preview of it). */
  close(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  private flush(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (this.writing || !this.dirty || this.closed || !this.o.mayWrite()) return;
    this.dirty = false;
    this.lastWrite = this.o.clock();
    this.writing = this.o.repo
      .putPreview(this.o.tenant, this.o.jobId, this.preview)
      .catch((err: unknown) => this.o.logger.warn('preview write failed', { job_id: this.o.jobId, ...errorFields(err) }))
      .finally(() => {
        this.writing = null;
        // a frame that came in meanwhile goes out at the next slot
        if (this.dirty && !this.closed) this.timer ??= setTimeout(() => this.flush(), Math.max(0, this.lastWrite + this.o.intervalMs - this.o.clock()));
      });
  }
}

function toStored(f: PreviewFrame, seq: number, now: number): StoredPreviewFrame {
  return {
    seq,
    at: new Date(now).toISOString(),
    image: f.image,
    images: f.images,
    step: f.step,
    total: f.total,
    phase: f.phase,
    window_end: f.windowEnd,
    method: f.method,
    models: f.models.map((m) => ({ id: m.id, run: m.run, width: m.width, height: m.height, png: `data:image/png;base64,${base64(m.png)}` })),
  };
}

function base64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64');
}
