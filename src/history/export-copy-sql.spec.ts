import type { PaymentFilters } from './history-filters';
import { crlfParts } from './csv-lines';
import { exportCopySql } from './payment-history.repository';

/**
 * The COPY statement of the CSV export carries its filter values as literals (COPY takes
 * no bind parameters). `parseFilters` never lets these strings through; here they reach
 * the statement builder directly, to show that escaping alone keeps each one a string
 * constant.
 */
const ATTACKS = [
  `x'); DROP TABLE job_payments; --`,
  `x\\'); SELECT pg_sleep(10); --`,
  `x'' OR ''1''=''1`,
  `\\\\'; COPY (SELECT 1) TO PROGRAM 'id'; --`,
  `$$; DROP TABLE job; $$`,
  `x"); DROP TABLE job; --`,
];

/** The statement with every string literal removed, and the literals' values as PostgreSQL reads them. */
function split(sql: string): { code: string; literals: string[] } {
  const literals: string[] = [];
  // E'…': backslash escapes (escapeLiteral doubles backslashes); '…': standard strings, quotes doubled.
  const code = sql.replace(/(E?)'((?:[^'\\]|''|\\.)*)'/g, (_match, e: string, body: string) => {
    literals.push(e ? body.replace(/''/g, "'").replace(/\\(.)/g, '$1') : body.replace(/''/g, "'"));
    return '?';
  });
  return { code, literals };
}

const scales = new Map([
  ['BTC', 8],
  ['AITBC', 6],
]);
const clean = split(exportCopySql({}, scales)).code;

describe('exportCopySql: filter values are literals only', () => {
  const time = (text: string) => ({ text, midnight: false });
  const cases: [string, (attack: string) => PaymentFilters][] = [
    ['currency', (a) => ({ currency: a })],
    ['job_id', (a) => ({ jobId: a })],
    ['client_id', (a) => ({ clientId: a })],
    ['miner_id', (a) => ({ minerId: a })],
    ['created_from', (a) => ({ createdFrom: time(a) })],
    ['created_to', (a) => ({ createdTo: time(a) })],
    ['settled_from', (a) => ({ settledFrom: time(a) })],
    ['settled_to', (a) => ({ settledTo: time(a) })],
    ['amount_min', (a) => ({ amountMin: a })],
    ['amount_max', (a) => ({ amountMax: a })],
    ['status', (a) => ({ statuses: ['released', a] as PaymentFilters['statuses'] })],
  ];

  it.each(cases)('%s: an injection attempt stays one string constant, the statement around it unchanged', (_, make) => {
    for (const attack of ATTACKS) {
      const sql = exportCopySql(make(attack), scales);
      const { code, literals } = split(sql);
      // The attack is exactly one literal's value …
      expect(literals).toContain(attack);
      // … and outside the literals there is only the statement's own SQL: no second statement, no comment.
      expect(code).not.toMatch(/;|--|DROP|pg_sleep|PROGRAM|\$\$/);
      expect(code.startsWith(clean.slice(0, clean.indexOf('FROM job_payments')))).toBe(true);
      expect(code.trimEnd().endsWith('TO STDOUT WITH (FORMAT csv, HEADER true)')).toBe(true);
    }
  });

  it('refuses a scale that is not an integer (it is written into the statement as a number)', () => {
    expect(() => exportCopySql({}, new Map([['BTC', 8.5]]))).toThrow(/scale/);
    expect(() => exportCopySql({}, new Map([['BTC', Number.NaN]]))).toThrow(/scale/);
  });

  it('an empty status list matches nothing', () => {
    expect(exportCopySql({ statuses: [] }, scales)).toMatch(/WHERE false/);
  });
});

describe('crlfParts', () => {
  function run(chunks: string[]): string {
    const state = { quoted: false };
    return Buffer.concat(chunks.flatMap((c) => crlfParts(Buffer.from(c), state))).toString();
  }

  it('ends every line with CRLF and keeps line breaks inside quoted fields, across any chunking', () => {
    const input = 'a,b\n1,"x, ""y""\nz"\n2,\n"",""""\n3,"\r\n"\n';
    const expected = 'a,b\r\n1,"x, ""y""\nz"\r\n2,\r\n"",""""\r\n3,"\r\n"\r\n';
    expect(run([input])).toBe(expected);
    for (let size = 1; size <= 7; size++) {
      const chunks: string[] = [];
      for (let i = 0; i < input.length; i += size) chunks.push(input.slice(i, i + size));
      expect(run(chunks)).toBe(expected);
    }
  });
});
