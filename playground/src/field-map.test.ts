import { describe, expect, it } from 'vitest';
import { fieldTarget, parentField } from './field-map.ts';

describe('field paths to inputs', () => {
  it('walks up a JSON path one step at a time', () => {
    const chain: string[] = [];
    for (let p: string | null = 'models[1].grounding[0].box'; p; p = parentField(p)) chain.push(p);
    expect(chain).toEqual(['models[1].grounding[0].box', 'models[1].grounding[0]', 'models[1].grounding', 'models[1]', 'models']);
    expect(parentField('header Authorization')).toBeNull();
    expect(parentField('aggregation.window[1]')).toBe('aggregation.window');
  });

  it('picks the exact input, else the nearest enclosing one, else none', () => {
    const onPage = new Set(['models[1].grounding', 'models[1].grounding[0].phrase', 'aggregation.window', 'header Authorization']);
    const has = (f: string) => onPage.has(f);
    expect(fieldTarget('models[1].grounding[0].phrase', has)).toBe('models[1].grounding[0].phrase');
    expect(fieldTarget('models[1].grounding[0].box', has)).toBe('models[1].grounding');
    expect(fieldTarget('aggregation.window', has)).toBe('aggregation.window');
    expect(fieldTarget('header Authorization', has)).toBe('header Authorization');
    expect(fieldTarget('webhook.url', has)).toBeNull();
    expect(fieldTarget('body', has)).toBeNull();
  });
});
