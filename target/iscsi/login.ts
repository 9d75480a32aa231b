/**
 * The login phase of one connection (RFC 7143 §6.3): security stage (AuthMethod, CHAP), then
 * operational stage (parameter negotiation), then the transition to the full feature phase.
 * Pure decision logic: the connection builds the Login Response PDUs and owns the session table.
 */
import { ChapAuthenticator, ChapCredentials } from './chap.js';
import { ServerConfig, IscsiTargetDefinition, targetAllows } from './context.js';
import { FLAG_CONTINUE, FLAG_FINAL, LoginStatus } from './pdu.js';
import { NegotiationError, OperationalParams, ParamNegotiator, SessionType } from './params.js';
import { TextAccumulator, TextFormatError, TextPairs, decodeText, encodeText } from './text.js';

export const Stage = { SECURITY: 0, OPERATIONAL: 1, FULL_FEATURE: 3 } as const;

/** What a successful login hands the connection to build the session from. */
export interface LoginResult {
  sessionType: SessionType;
  initiatorName: string;
  initiatorAlias: string | undefined;
  target: IscsiTargetDefinition | undefined;
  isid: Buffer;
  /** The TSIH the initiator sent: 0 for a new session. */
  tsih: number;
  /** Tag of the portal group the login came through. */
  portalGroupTag: number;
  cid: number;
  cmdSN: number;
  params: OperationalParams;
}

export type LoginReply =
  /** Answer and stay in login. */
  | { kind: 'respond'; transit: boolean; csg: number; nsg: number; text: Buffer }
  /** Negotiation is over: bind a session, then answer with T=1 NSG=3 and its TSIH. */
  | { kind: 'complete'; csg: number; text: Buffer; result: LoginResult }
  /** Answer with this status and close the connection. */
  | { kind: 'reject'; status: number; reason: string };

const SECURITY_KEYS = /^(AuthMethod|CHAP_[A-Z])$/;
const IDENTITY_KEYS = new Set(['InitiatorName', 'InitiatorAlias', 'SessionType', 'TargetName']);

export class LoginNegotiation {
  private stage = -1;
  private first: { isid: Buffer; tsih: number; cid: number; cmdSN: number } | undefined;
  private readonly text = new TextAccumulator(16384);
  private readonly negotiator: ParamNegotiator;
  private identity: { type: SessionType; initiator: string; alias?: string; target?: IscsiTargetDefinition } | undefined;
  private chapRequired: ChapCredentials | undefined;
  private chapMutual: ChapCredentials | undefined;
  private authMethod: 'none' | 'CHAP' | undefined;
  private chap: ChapAuthenticator | undefined;
  private authenticated = false;
  private declaredMrdsl = false;
  private answeredFirst = false;

  constructor(private readonly config: ServerConfig) {
    this.negotiator = new ParamNegotiator(config.limits);
  }

  /** The initiator name once the first text arrived (for logs). */
  get initiatorName(): string | undefined {
    return this.identity?.initiator;
  }

  handle(bhs: Buffer, data: Buffer): LoginReply {
    const flags = bhs[1];
    const transit = (flags & FLAG_FINAL) !== 0;
    const cont = (flags & FLAG_CONTINUE) !== 0;
    const csg = (flags >> 2) & 3;
    const nsg = flags & 3;
    const isid = bhs.subarray(8, 14);
    const tsih = bhs.readUInt16BE(14);
    const cid = bhs.readUInt16BE(20);

    if (!this.first) {
      // Version-min above 0 asks for a protocol version newer than RFC 7143's 0x00.
      if (bhs[3] > 0) return reject(LoginStatus.UNSUPPORTED_VERSION, `version-min ${bhs[3]}`);
      this.first = { isid: Buffer.from(isid), tsih, cid, cmdSN: bhs.readUInt32BE(24) };
      if (csg !== Stage.SECURITY && csg !== Stage.OPERATIONAL) return reject(LoginStatus.INITIATOR_ERROR, `login starts in stage ${csg}`);
      this.stage = csg;
    } else if (!isid.equals(this.first.isid) || tsih !== this.first.tsih || cid !== this.first.cid) {
      return reject(LoginStatus.INITIATOR_ERROR, 'ISID/TSIH/CID changed during login');
    }
    if (transit && cont) return reject(LoginStatus.INITIATOR_ERROR, 'T and C both set');
    if (csg !== this.stage) return reject(LoginStatus.INITIATOR_ERROR, `CSG ${csg} while in stage ${this.stage}`);

    let pairs: TextPairs;
    try {
      const whole = this.text.push(data, cont);
      if (!whole) return { kind: 'respond', transit: false, csg, nsg: 0, text: Buffer.alloc(0) };
      pairs = decodeText(whole);
    } catch (e) {
      if (e instanceof TextFormatError) return reject(LoginStatus.INITIATOR_ERROR, e.message);
      throw e;
    }
    const keys = new Map<string, string>();
    for (const [k, v] of pairs) {
      if (keys.has(k)) return reject(LoginStatus.INITIATOR_ERROR, `${k} sent twice`);
      keys.set(k, v);
    }

    const answers: TextPairs = [];
    if (!this.identity) {
      const failure = this.identify(keys);
      if (failure) return failure;
    }
    if (!this.answeredFirst) {
      this.answeredFirst = true;
      // §13.9: a Normal session learns the portal group tag from the first Login Response.
      if (this.identity!.type === 'Normal') {
        answers.push(['TargetPortalGroupTag', String(this.config.portalGroupTag)]);
        if (this.identity!.target?.alias) answers.push(['TargetAlias', this.identity!.target.alias]);
      }
    }

    const security = [...keys.keys()].filter((k) => SECURITY_KEYS.test(k));
    if (security.length > 0) {
      if (this.stage !== Stage.SECURITY) return reject(LoginStatus.INITIATOR_ERROR, 'security keys in the operational stage');
      const failure = this.authenticate(keys, answers);
      if (failure) return failure;
    }
    try {
      for (const [k, v] of keys) {
        if (IDENTITY_KEYS.has(k) || SECURITY_KEYS.test(k)) continue;
        const a = this.negotiator.answer(k, v, 'login');
        if (a !== undefined) answers.push([k, a]);
      }
    } catch (e) {
      if (e instanceof NegotiationError) return reject(LoginStatus.INITIATOR_ERROR, e.message);
      throw e;
    }

    let go = transit;
    if (transit) {
      if (nsg === 2 || nsg <= csg) return reject(LoginStatus.INITIATOR_ERROR, `bad transition ${csg} -> ${nsg}`);
      if (this.stage === Stage.SECURITY && !this.authenticated) {
        if (this.authMethod === 'CHAP') go = false; // mid-exchange: stay until CHAP_R checks out
        else if (this.chapRequired) return reject(LoginStatus.AUTH_FAILURE, 'authentication required, none negotiated');
        else this.authenticated = true;
      }
    }
    if (go && nsg === Stage.FULL_FEATURE) {
      const missing = this.negotiator.missingDigests();
      if (missing.length > 0) return reject(LoginStatus.MISSING_PARAMETER, `this target requires CRC32C; ${missing.join(' and ')} not offered`);
    }
    if ((go && nsg === Stage.FULL_FEATURE) || this.stage === Stage.OPERATIONAL) this.declare(answers);
    if (!go) return { kind: 'respond', transit: false, csg, nsg: 0, text: encodeText(answers) };
    if (nsg === Stage.OPERATIONAL) {
      this.stage = Stage.OPERATIONAL;
      return { kind: 'respond', transit: true, csg, nsg, text: encodeText(answers) };
    }
    const id = this.identity!;
    return {
      kind: 'complete',
      csg,
      text: encodeText(answers),
      result: {
        sessionType: id.type,
        initiatorName: id.initiator,
        initiatorAlias: id.alias,
        target: id.target,
        isid: this.first.isid,
        tsih: this.first.tsih,
        portalGroupTag: this.config.portalGroupTag,
        cid: this.first.cid,
        cmdSN: this.first.cmdSN,
        params: this.negotiator.finish(),
      },
    };
  }

  /** The first text names the initiator, the session type and the target. */
  private identify(keys: Map<string, string>): LoginReply | undefined {
    const initiator = keys.get('InitiatorName');
    if (!initiator) return reject(LoginStatus.MISSING_PARAMETER, 'no InitiatorName');
    const st = keys.get('SessionType') ?? 'Normal';
    if (st !== 'Normal' && st !== 'Discovery') return reject(LoginStatus.SESSION_TYPE_UNSUPPORTED, `SessionType=${st}`);
    this.negotiator.setSessionType(st);
    let target: IscsiTargetDefinition | undefined;
    let digests = this.config.digests;
    if (st === 'Normal') {
      const name = keys.get('TargetName');
      if (!name) return reject(LoginStatus.MISSING_PARAMETER, 'no TargetName');
      target = this.config.findTarget(name);
      if (!target) return reject(LoginStatus.NOT_FOUND, `no target ${name}`);
      if (!targetAllows(target, initiator)) return reject(LoginStatus.NOT_ALLOWED, `${initiator} not allowed on ${name}`);
      this.chapRequired = target.chap;
      this.chapMutual = target.mutualChap;
      digests = { header: target.digests?.header ?? digests.header, data: target.digests?.data ?? digests.data };
    } else {
      this.chapRequired = this.config.discoveryChap;
    }
    if (this.chapRequired && this.stage !== Stage.SECURITY) {
      return reject(LoginStatus.AUTH_FAILURE, 'authentication required but login skipped the security stage');
    }
    this.negotiator.setDigests(digests);
    this.identity = { type: st, initiator, alias: keys.get('InitiatorAlias'), target };
    return undefined;
  }

  private authenticate(keys: Map<string, string>, answers: TextPairs): LoginReply | undefined {
    const offered = keys.get('AuthMethod');
    if (offered !== undefined) {
      if (this.authMethod) return reject(LoginStatus.INITIATOR_ERROR, 'AuthMethod negotiated twice');
      const list = offered.split(',');
      if (this.chapRequired && list.includes('CHAP')) {
        this.authMethod = 'CHAP';
        this.chap = new ChapAuthenticator(this.chapRequired, this.chapMutual);
        answers.push(['AuthMethod', 'CHAP']);
      } else if (!this.chapRequired && list.includes('None')) {
        this.authMethod = 'none';
        this.authenticated = true;
        answers.push(['AuthMethod', 'None']);
      } else {
        return reject(LoginStatus.AUTH_FAILURE, `cannot agree on AuthMethod=${offered}`);
      }
    }
    const chapKeys = new Map([...keys].filter(([k]) => k.startsWith('CHAP_')));
    if (chapKeys.size === 0) return undefined;
    if (!this.chap) return reject(LoginStatus.AUTH_FAILURE, 'CHAP keys without AuthMethod=CHAP');
    const step = this.chap.step(chapKeys);
    if (step.kind === 'failed') return reject(LoginStatus.AUTH_FAILURE, step.reason);
    answers.push(...step.answers);
    if (step.kind === 'done') this.authenticated = true;
    return undefined;
  }

  private declare(answers: TextPairs): void {
    if (this.declaredMrdsl) return;
    this.declaredMrdsl = true;
    answers.push(['MaxRecvDataSegmentLength', String(this.config.limits.maxRecvDataSegmentLength)]);
  }
}

function reject(status: number, reason: string): LoginReply {
  return { kind: 'reject', status, reason };
}
