import { describe, expect, it } from 'vitest';
import type { JobPreview } from '../../shared/client/client.ts';
import { PreviewFrames, phaseLabel, pictureLabel } from './live.ts';

const ORDER = ['shapes-base', 'shapes-layout', 'shapes-style'];
const png = (tag: string) => `data:image/png;base64,${tag}`;

let seq = 0;
function frame(o: { step: number; phase?: JobPreview['phase']; windowEnd?: boolean; image?: number; run?: 'aggregated' | 'solo'; ids?: string[]; seq?: number }): JobPreview {
  const run = o.run ?? 'aggregated';
  return {
    job_id: 'job_x',
    seq: o.seq ?? ++seq,
    at: '2030-01-01T00:00:00Z',
    image: o.image ?? 1,
    images: 2,
    step: o.step,
    total: 10,
    phase: o.phase ?? 'aggregating',
    window_end: o.windowEnd ?? false,
    method: 'vae_decode_x0',
    models: (o.ids ?? ORDER).map((id) => ({ id, run, width: 32, height: 32, png: png(`${run}-${id}-${o.image ?? 1}-${o.step}`) })),
  };
}

const shown = (f: PreviewFrames, run: 'aggregated' | 'solo') => f.pictures(run, ORDER).map((p) => `${p.id}@${p.step}`);

describe('the phase in words', () => {
  it('names the model running alone, and every other phase', () => {
    expect(phaseLabel({ phase: 'solo', model: 'shapes-layout' })).toBe('shapes-layout alone');
    expect(phaseLabel({ phase: 'aggregating' })).toBe('aggregating the models');
    expect(phaseLabel({ phase: 'base_only' })).toBe('base model only');
    expect(phaseLabel({ phase: 'starting' })).toBe('starting');
  });
});

describe('live preview frames', () => {
  it('keep the last picture of each model in each run, and the window’s end beside them', () => {
    const f = new PreviewFrames();
    expect(f.empty).toBe(true);
    f.add(frame({ step: 1 }));
    f.add(frame({ step: 4, windowEnd: true }));
    // after the window only the base runs on: the auxiliaries keep their last picture
    f.add(frame({ step: 7, phase: 'base_only', ids: ['shapes-base'] }));
    f.add(frame({ step: 6, phase: 'solo', run: 'solo', ids: ['shapes-layout'] }));
    f.add(frame({ step: 8, phase: 'solo', run: 'solo', ids: ['shapes-base'] }));
    expect(shown(f, 'aggregated')).toEqual(['shapes-base@7', 'shapes-layout@4', 'shapes-style@4']);
    // the job's model order, not the order the solo runs came in
    expect(shown(f, 'solo')).toEqual(['shapes-base@8', 'shapes-layout@6']);
    expect(f.windowEnd!.step).toBe(4);
    expect(f.windowEnd!.pictures.map((p) => [p.id, p.png])).toEqual(ORDER.map((id) => [id, png(`aggregated-${id}-1-4`)]));
    expect([f.image, f.images, f.method]).toEqual([1, 2, 'vae_decode_x0']);
  });

  it('do not show the window’s end twice: the pictures of the aggregated run are those after it', () => {
    const f = new PreviewFrames();
    f.add(frame({ step: 1 }));
    expect(f.aggregatedSinceWindowEnd(ORDER).map((p) => p.step)).toEqual([1, 1, 1]);
    f.add(frame({ step: 4, windowEnd: true }));
    expect(f.aggregatedSinceWindowEnd(ORDER)).toEqual([]);
    f.add(frame({ step: 6, phase: 'base_only', ids: ['shapes-base'] }));
    expect(f.aggregatedSinceWindowEnd(ORDER).map((p) => `${p.id}@${p.step}`)).toEqual(['shapes-base@6']);
  });

  it('drop a frame no newer than one already taken (a reconnected stream sends the last again)', () => {
    const f = new PreviewFrames();
    expect(f.add(frame({ step: 3, seq: 100 }))).toBe(true);
    expect(f.add(frame({ step: 2, seq: 99 }))).toBe(false);
    expect(f.add(frame({ step: 2, seq: 100 }))).toBe(false);
    expect(shown(f, 'aggregated')).toEqual(['shapes-base@3', 'shapes-layout@3', 'shapes-style@3']);
  });

  it('start over with each image, the window’s end included', () => {
    const f = new PreviewFrames();
    f.add(frame({ step: 4, windowEnd: true }));
    f.add(frame({ step: 9, run: 'solo', phase: 'solo', ids: ['shapes-style'] }));
    f.add(frame({ step: 1, image: 2 }));
    expect(f.image).toBe(2);
    expect(shown(f, 'aggregated')).toEqual(['shapes-base@1', 'shapes-layout@1', 'shapes-style@1']);
    expect(shown(f, 'solo')).toEqual([]);
    expect(f.windowEnd).toBeNull();
  });

  it('hold at most one picture per model and run, however many frames come', () => {
    const f = new PreviewFrames();
    for (let step = 1; step < 10_000; step++) f.add(frame({ step: (step % 9) + 1 }));
    expect(f.pictures('aggregated', ORDER)).toHaveLength(3);
    f.clear();
    expect(f.empty).toBe(true);
    expect(f.add(frame({ step: 1, seq: 1 }))).toBe(true);
  });

  it('say what each picture is', () => {
    const f = new PreviewFrames();
    f.add(frame({ step: 4, ids: ['shapes-layout'] }));
    f.add(frame({ step: 6, run: 'solo', phase: 'solo', ids: ['shapes-layout'] }));
    expect([...f.pictures('aggregated', ORDER), ...f.pictures('solo', ORDER)].map(pictureLabel)).toEqual(['shapes-layout in the aggregated run, step 4 of 10', 'shapes-layout alone, step 6 of 10']);
  });
});
