/**
 * The scripted initiator of test/iscsi-helpers.ts over a real TCP connection, for commands no
 * libiscsi tool sends (PERSISTENT RESERVE OUT with APTPL...). It keeps the byte-by-byte PDU
 * builders and only replaces "run the in-process target" with "wait for the socket".
 */
import { connect, type Socket } from 'node:net';
import type { StreamTransport } from '../../hal/transport.js';
import type { IscsiServer } from '../../target/iscsi/iscsi-server.js';
import { OP, TestInitiator, textOf, type RxPdu } from '../iscsi-helpers.js';

export interface ScsiOutcome {
  status: number;
  data: Buffer;
  sense?: Buffer;
}

export class TcpInitiator {
  private constructor(readonly ini: TestInitiator, private readonly socket: Socket) {}

  static async connect(host: string, port: number, isid?: Uint8Array): Promise<TcpInitiator> {
    const socket = await new Promise<Socket>((resolve, reject) => {
      const s = connect({ host, port }, () => resolve(s));
      s.once('error', reject);
    });
    // TestInitiator writes through handler.onData and reads what its transport is given.
    const bridge = {
      accept(t: StreamTransport) {
        socket.on('data', (d: Buffer) => t.write([d]));
        return { onData: (b: Buffer) => void socket.write(b), onDrain() {}, onClose() {} };
      },
    };
    const ini = new TestInitiator(bridge as unknown as IscsiServer);
    if (isid) ini.isid = Buffer.from(isid);
    return new TcpInitiator(ini, socket);
  }

  async waitFor(op: number, timeoutMs = 5000): Promise<RxPdu> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const i = this.ini.received.findIndex((p) => p.op === op);
      if (i >= 0) return this.ini.received.splice(i, 1)[0]!;
      if (Date.now() > end) throw new Error(`no PDU 0x${op.toString(16)} within ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  async login(initiatorName: string, target: string): Promise<void> {
    const ini = this.ini;
    ini.loginPdu({ csg: 0, nsg: 1, transit: true, text: textOf({ InitiatorName: initiatorName, SessionType: 'Normal', TargetName: target, AuthMethod: 'None' }) });
    await this.loginStep();
    ini.loginPdu({ csg: 1, nsg: 3, transit: true, text: textOf({ ImmediateData: 'Yes', InitialR2T: 'No' }) });
    ini.tsih = (await this.loginStep()).bhs.readUInt16BE(14);
  }

  private async loginStep(): Promise<RxPdu> {
    const r = await this.waitFor(OP.LOGIN_RSP);
    if (r.bhs[36] !== 0) throw new Error(`login failed: status 0x${r.bhs.readUInt16BE(36).toString(16)}`);
    return r;
  }

  /** One SCSI command to LUN 0: Data-Out as immediate data, Data-In collected, status returned. */
  async command(cdb: number[], o: { dataOut?: Uint8Array; dataIn?: number } = {}): Promise<ScsiOutcome> {
    const itt = this.ini.scsi({
      cdb, read: o.dataIn !== undefined, write: o.dataOut !== undefined,
      edtl: o.dataOut?.length ?? o.dataIn ?? 0, data: o.dataOut && Buffer.from(o.dataOut),
    });
    const chunks: Buffer[] = [];
    for (;;) {
      const p = await this.waitForTag(itt);
      if (p.op === OP.DATA_IN) {
        chunks.push(p.data);
        if (p.flags & 0x01) return { status: p.bhs[3], data: Buffer.concat(chunks) };
        continue;
      }
      if (p.op !== OP.SCSI_RSP) throw new Error(`unexpected PDU 0x${p.op.toString(16)}`);
      // Sense data travels in the response's data segment behind a 2-byte length.
      const sense = p.data.length >= 2 ? p.data.subarray(2, 2 + p.data.readUInt16BE(0)) : undefined;
      return { status: p.bhs[3], data: Buffer.concat(chunks), sense };
    }
  }

  private async waitForTag(itt: number): Promise<RxPdu> {
    const end = Date.now() + 5000;
    for (;;) {
      const i = this.ini.received.findIndex((p) => p.itt === itt && (p.op === OP.DATA_IN || p.op === OP.SCSI_RSP));
      if (i >= 0) return this.ini.received.splice(i, 1)[0]!;
      if (Date.now() > end) throw new Error(`no answer to task 0x${itt.toString(16)}`);
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  close(): void {
    this.socket.destroy();
  }
}
