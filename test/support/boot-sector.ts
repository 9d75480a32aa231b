/**
 * A 512-byte MBR that writes a marker to COM1 and halts: enough to prove that a BIOS (SeaBIOS,
 * or iPXE's sanboot) loaded sector 0 from a kura LUN and jumped to it.
 */
export function bootSector(marker: string): Buffer {
  const code = [
    0xfa, // cli
    0xfc, // cld
    0x31, 0xc0, // xor ax, ax
    0x8e, 0xd8, // mov ds, ax
    0xbe, 0x00, 0x00, // mov si, msg (patched below)
    0xba, 0xf8, 0x03, // mov dx, 0x3f8 (COM1 data register)
    // next:
    0xac, // lodsb
    0x84, 0xc0, // test al, al
    0x74, 0x03, // jz done
    0xee, // out dx, al
    0xeb, 0xf8, // jmp next
    // done:
    0xf4, // hlt
    0xeb, 0xfd, // jmp done
  ];
  const sector = Buffer.alloc(512);
  Buffer.from(code).copy(sector, 0);
  const msgAt = code.length;
  sector.writeUInt16LE(0x7c00 + msgAt, 7);
  sector.write(`${marker}\r\n\0`, msgAt, 'latin1');
  sector[510] = 0x55;
  sector[511] = 0xaa;
  return sector;
}
