/**
 * Regression found by the fuzzing properties (test/fuzz/): key names that are also properties of
 * Object.prototype used to find them in the key table, throw, and drop the connection unanswered.
 */
import { expect } from 'chai';
import { OP, TestInitiator, makeServer, parseText, textOf, tick } from '../../test/iscsi-helpers.js';
import { DEFAULT_LIMITS, ParamNegotiator } from './params.js';

const NAMES = ['toString', 'constructor', '__proto__', 'hasOwnProperty', 'valueOf', 'isPrototypeOf'];

describe('iscsi key names from the prototype', () => {
  it('answers them NotUnderstood, in login and in the full feature phase', () => {
    for (const phase of ['login', 'ffp'] as const) {
      const n = new ParamNegotiator(DEFAULT_LIMITS);
      for (const k of NAMES) expect(n.answer(k, 'x', phase), `${k} (${phase})`).to.equal('NotUnderstood');
    }
  });

  it('completes a login that offers them and answers a Text request with them', async () => {
    const { server } = makeServer();
    const ini = new TestInitiator(server);
    const answers = await ini.login({ keys: Object.fromEntries(NAMES.map((k) => [k, ''])) });
    for (const k of NAMES) expect(answers.get(k), k).to.equal('NotUnderstood');
    ini.textRequest({ text: textOf(NAMES.map((k) => [k, '1'])) });
    await tick();
    const r = parseText(ini.next(OP.TEXT_RSP).data);
    for (const k of NAMES) expect(r.get(k), k).to.equal('NotUnderstood');
    expect(ini.closed).to.equal(false);
  });
});
