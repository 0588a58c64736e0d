/**
 * What the page shows while a job runs: its phase in words, and the live previews of the
 * event stream. Pure, so it is tested without a browser.
 *
 * Previews come as frames (JobPreview), each with a picture of the models active at that
 * moment: all of them in the window, then the base alone, then one model at a time while
 * it runs alone (outputs.solo). So the page keeps the last picture of each model in each
 * run, and the frame of the window's last step, where the models were just pulled
 * together and which a fast job would otherwise show only for an instant.
 */
import type { JobPreview, JobRecord } from '../../shared/client/client.ts';

type Progress = NonNullable<JobRecord['progress']>;

const PHASES: Record<string, string> = {
  starting: 'starting',
  aggregating: 'aggregating the models',
  base_only: 'base model only',
  decoding: 'decoding',
};

/** "aggregating the models", "shapes-layout alone" (outputs.solo) */
export function phaseLabel(p: Pick<Progress, 'phase' | 'model'>): string {
  if (p.phase === 'solo') return `${p.model ?? 'a model'} alone`;
  return PHASES[p.phase] ?? p.phase.replaceAll('_', ' ');
}

/** What a preview picture is, by the frame's `method`. */
export const PREVIEW_METHODS: Record<string, string> = {
  vae_decode_x0:
    'Each picture is the model’s current latent carried to an estimate of its final latent with its latest noise prediction, then decoded by the VAE: where the model is heading at that step, not a finished image.',
};

export type Run = JobPreview['models'][number]['run'];

export interface PreviewPicture {
  id: string;
  run: Run;
  /** a data: URL */
  png: string;
  width: number;
  height: number;
  step: number;
  total: number;
}

export interface WindowEndFrame {
  step: number;
  total: number;
  pictures: PreviewPicture[];
}

/** "shapes-layout in the aggregated run, step 4 of 10" (alt text); "shapes-layout alone, …" */
export function pictureLabel(p: PreviewPicture): string {
  return `${p.id} ${p.run === 'solo' ? 'alone' : 'in the aggregated run'}, step ${p.step} of ${p.total}`;
}

export class PreviewFrames {
  private latest = new Map<string, PreviewPicture>();
  private windowEndFrame: WindowEndFrame | null = null;
  private lastSeq = -Infinity;
  /** the image (1-based) the pictures belong to, of how many; 0 before the first frame */
  image = 0;
  images = 0;
  method = '';

  /** Take a frame; false when it is no newer than one already taken (a reconnected stream repeats). */
  add(f: JobPreview): boolean {
    if (f.seq <= this.lastSeq) return false;
    this.lastSeq = f.seq;
    // a new image (or a retried run, which starts again at image 1): the old pictures are another image's
    if (f.image !== this.image) {
      this.latest.clear();
      this.windowEndFrame = null;
    }
    this.image = f.image;
    this.images = f.images;
    this.method = f.method;
    const pictures = f.models.map((m): PreviewPicture => ({ id: m.id, run: m.run, png: m.png, width: m.width, height: m.height, step: f.step, total: f.total }));
    for (const p of pictures) this.latest.set(`${p.run}\u0000${p.id}`, p);
    if (f.window_end) this.windowEndFrame = { step: f.step, total: f.total, pictures };
    return true;
  }

  clear(): void {
    this.latest.clear();
    this.windowEndFrame = null;
    this.lastSeq = -Infinity;
    this.image = 0;
    this.images = 0;
    this.method = '';
  }

  get empty(): boolean {
    return this.latest.size === 0;
  }

  /** The last picture of each model in `run`, in the job's model order (unknown ids last). */
  pictures(run: Run, order: readonly string[]): PreviewPicture[] {
    const rank = (id: string) => (order.includes(id) ? order.indexOf(id) : order.length);
    return [...this.latest.values()].filter((p) => p.run === run).sort((a, b) => rank(a.id) - rank(b.id));
  }

  /**
   * The last picture of each model in the aggregated run, less those the window's end
   * already shows (until a later frame comes, the latest frame is the window's end).
   */
  aggregatedSinceWindowEnd(order: readonly string[]): PreviewPicture[] {
    const shown = new Set(this.windowEndFrame?.pictures.map((p) => `${p.id}\u0000${p.step}`));
    return this.pictures('aggregated', order).filter((p) => !shown.has(`${p.id}\u0000${p.step}`));
  }

  get windowEnd(): WindowEndFrame | null {
    return this.windowEndFrame;
  }
}
