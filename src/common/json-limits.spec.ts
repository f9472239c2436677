import fc from 'fast-check';
import { jsonShapeProblem } from './json-limits';

/** Reference measures, by walking the parsed value (fine for the small values generated here). */
function depthOf(value: unknown): number {
  if (value === null || typeof value !== 'object') return 0;
  const children = Array.isArray(value) ? value : Object.values(value);
  return 1 + Math.max(0, ...children.map(depthOf));
}
function entriesOf(value: unknown): number {
  if (value === null || typeof value !== 'object') return 0;
  const children = Array.isArray(value) ? value : Object.values(value);
  return children.length + children.reduce<number>((sum, child) => sum + entriesOf(child), 0);
}

const nested = (levels: number, open = '[', close = ']') => open.repeat(levels) + close.repeat(levels);

describe('jsonShapeProblem', () => {
  it('measures depth and entries exactly as the parsed value has them, whatever the strings hold', () => {
    fc.assert(
      fc.property(fc.jsonValue({ maxDepth: 6 }), fc.boolean(), (value, pretty) => {
        const text = JSON.stringify(value, null, pretty ? 2 : undefined);
        // U+0000 in a string is refused on its own (next test), whatever the shape.
        fc.pre(!/(^|[^\\])(\\\\)*\\u(0000|d[89a-f])/i.test(text));
        const depth = depthOf(value);
        const entries = entriesOf(value);
        expect(jsonShapeProblem(text, { maxDepth: depth, maxEntries: entries })).toBeUndefined();
        if (depth > 0)
          expect(jsonShapeProblem(text, { maxDepth: depth - 1, maxEntries: entries })).toEqual({
            limit: 'depth',
            max: depth - 1,
          });
        if (entries > 0)
          expect(jsonShapeProblem(text, { maxDepth: depth, maxEntries: entries - 1 })).toEqual({
            limit: 'entries',
            max: entries - 1,
          });
      }),
      { numRuns: 2000 },
    );
  });

  it('refuses U+0000 in any string, key or value (PostgreSQL cannot store it), but not an escaped backslash before "u0000"', () => {
    const limits = { maxDepth: 4, maxEntries: 10 };
    expect(jsonShapeProblem(JSON.stringify({ payload: { prompt: 'a\u0000b' } }), limits)).toEqual({
      limit: 'unstorable',
    });
    expect(jsonShapeProblem(JSON.stringify({ ['k\u0000']: 1 }), limits)).toEqual({ limit: 'unstorable' });
    expect(jsonShapeProblem(JSON.stringify({ text: '\\u0000' }), limits)).toBeUndefined();
    expect(jsonShapeProblem(JSON.stringify({ text: 'u0000 \\ \u0001' }), limits)).toBeUndefined();
  });

  it('refuses an unpaired surrogate escape (PostgreSQL cannot store it), but not a pair or a raw character', () => {
    const limits = { maxDepth: 4, maxEntries: 10 };
    expect(jsonShapeProblem('{"a":"\\ud800"}', limits)).toEqual({ limit: 'unstorable' });
    expect(jsonShapeProblem('{"a":"\\udc00x"}', limits)).toEqual({ limit: 'unstorable' });
    expect(jsonShapeProblem('{"a":"\\ud83dx\\ude00"}', limits)).toEqual({ limit: 'unstorable' });
    expect(jsonShapeProblem('{"a":"\\ud83d\\ude00"}', limits)).toBeUndefined();
    expect(jsonShapeProblem('{"a":"\\uD83D\\uDE00 \\u00e9"}', limits)).toBeUndefined();
    expect(jsonShapeProblem(JSON.stringify({ a: '😀 é' }), limits)).toBeUndefined();
  });

  it('ignores brackets, colons, commas and escaped quotes inside strings', () => {
    const text = JSON.stringify({ a: '[[[{{{:,,,\\"]]]', b: ['"', '\\', '\\"[', '{'] });
    expect(jsonShapeProblem(text, { maxDepth: 2, maxEntries: 6 })).toBeUndefined();
  });

  it('stops at the first level past the limit, at any nesting (no recursion: 1,000,000 levels)', () => {
    expect(jsonShapeProblem(nested(1_000_000), { maxDepth: 32, maxEntries: 100 })).toEqual({ limit: 'depth', max: 32 });
    expect(jsonShapeProblem(`{"a":${nested(1_000_000, '{"a":', '}')}}`, { maxDepth: 32, maxEntries: 100 })).toEqual({
      limit: 'depth',
      max: 32,
    });
    expect(jsonShapeProblem(nested(32), { maxDepth: 32, maxEntries: 100 })).toBeUndefined();
  });

  it('counts duplicate keys and the elements of wide arrays', () => {
    const duplicates = `{${Array.from({ length: 101 }, () => '"a":1').join(',')}}`;
    expect(jsonShapeProblem(duplicates, { maxDepth: 2, maxEntries: 100 })).toEqual({ limit: 'entries', max: 100 });
    expect(jsonShapeProblem(`[${'0,'.repeat(100)}0]`, { maxDepth: 2, maxEntries: 100 })).toEqual({
      limit: 'entries',
      max: 100,
    });
    expect(jsonShapeProblem(`[${'0,'.repeat(99)}0]`, { maxDepth: 2, maxEntries: 100 })).toBeUndefined();
  });

  it('leaves malformed JSON to the parser instead of failing on it', () => {
    for (const text of ['', ']]]}}}', '{"a":', '"unterminated', '[1,,2', '{"a":1}}}}[', '\\']) {
      expect(jsonShapeProblem(text, { maxDepth: 4, maxEntries: 4 })).toBeUndefined();
    }
  });
});
