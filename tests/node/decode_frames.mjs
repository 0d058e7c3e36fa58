#!/usr/bin/env node
// decode_frames.mjs - checks Arrow IPC *file* bytes written by cachingproxy with an independent
// implementation (apache-arrow for JavaScript), the way Grafana's reader takes them: footer
// first, schema and custom metadata from the footer, record batches through the footer Blocks.
//
// usage: node decode_frames.mjs [--corrupt] PATH...
//   PATH is an .arrow file or a directory of them. When <base>.json lies beside an .arrow file
//   (always required inside a directory) the decoded frame must match it exactly: names, types,
//   nullability, null counts, values, schema metadata (name, refId, meta) and field metadata
//   (tstype, config, labels). A <base>.frame.json (the frame's JSON form) is checked too.
//   --corrupt: also damages each file in several ways and requires every damaged copy to be
//   rejected, proving the checks can fail.
// Exits 0 when everything matches, 1 with a message naming the file and the difference.

import { readFileSync, readdirSync, statSync, existsSync } from 'node:fs';
import { join, basename } from 'node:path';

let arrow;
try {
  arrow = await import('apache-arrow');
} catch (e) {
  console.error(`decode_frames: cannot load apache-arrow (${e.message}); run "npm ci" in tests/node`);
  process.exit(1);
}

class Mismatch extends Error {}

function fail(msg) {
  throw new Mismatch(msg);
}

function expectEq(what, got, want) {
  if (!Object.is(got, want))
    fail(`${what}: got ${fmt(got)}, want ${fmt(want)}`);
}

function fmt(v) {
  return typeof v === 'bigint' ? `${v}n` : JSON.stringify(v) ?? String(v);
}

// ---- container facts, read with a few lines of flatbuffer reading of our own ---------------

function checkContainer(bytes) {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const magic = 'ARROW1';
  const text = (off, n) => Buffer.from(bytes.subarray(off, off + n)).toString('latin1');
  if (bytes.length < 8 + 8 + 10) fail(`file too short (${bytes.length} bytes)`);
  expectEq('leading magic', text(0, 8), 'ARROW1\0\0');
  expectEq('trailing magic', text(bytes.length - 6, 6), magic);
  const flen = dv.getInt32(bytes.length - 10, true);
  if (flen <= 0 || flen > bytes.length - 10 - 16) fail(`footer length ${flen} out of range`);
  const foff = bytes.length - 10 - flen;
  expectEq('footer offset % 8', foff % 8, 0);
  expectEq('end-of-stream marker', dv.getUint32(foff - 8, true), 0xffffffff);
  expectEq('end-of-stream length', dv.getInt32(foff - 4, true), 0);

  const inFooter = (p, n) => {
    if (p < foff || p + n > foff + flen) fail(`footer reference ${p} outside the footer`);
    return p;
  };
  const slot = (t, i) => {
    const vt = inFooter(t - dv.getInt32(inFooter(t, 4), true), 4);
    const vts = dv.getUint16(vt, true);
    if (4 + 2 * i >= vts) return 0;
    const o = dv.getUint16(vt + 4 + 2 * i, true);
    return o ? t + o : 0;
  };
  const deref = (p) => inFooter(p + dv.getUint32(inFooter(p, 4), true), 4);
  const root = deref(foff);
  const v = slot(root, 0);
  expectEq('footer version', v ? dv.getInt16(v, true) : 0, arrow.MetadataVersion.V5);
  const dicts = slot(root, 2);
  expectEq('footer dictionaries', dicts ? dv.getUint32(deref(dicts), true) : 0, 0);
  const rbs = slot(root, 3);
  if (!rbs) fail('footer has no recordBatches');
  const vec = deref(rbs);
  const n = dv.getUint32(vec, true);
  expectEq('record batches in footer', n, 1);
  expectEq('Block vector alignment', (vec + 4) % 8, 0);
  const blocks = [];
  for (let i = 0; i < n; i++) {
    const e = inFooter(vec + 4 + 24 * i, 24);
    const b = {
      offset: Number(dv.getBigInt64(e, true)),
      metaDataLength: dv.getInt32(e + 8, true),
      bodyLength: Number(dv.getBigInt64(e + 16, true)),
    };
    for (const k of ['offset', 'metaDataLength', 'bodyLength'])
      if (b[k] % 8 !== 0 || b[k] < 0) fail(`Block ${i} ${k} ${b[k]} not a multiple of 8`);
    if (b.offset + b.metaDataLength + b.bodyLength > foff - 8)
      fail(`Block ${i} reaches past the record batches`);
    expectEq(`Block ${i} continuation marker`, dv.getUint32(b.offset, true), 0xffffffff);
    expectEq(`Block ${i} metadata length`, dv.getInt32(b.offset + 4, true), b.metaDataLength - 8);
    const msg = arrow.Message.decode(bytes.subarray(b.offset + 8, b.offset + b.metaDataLength));
    expectEq(`Block ${i} message version`, msg.version, arrow.MetadataVersion.V5);
    expectEq(`Block ${i} message type`, msg.headerType, arrow.MessageHeader.RecordBatch);
    expectEq(`Block ${i} bodyLength`, Number(msg.bodyLength), b.bodyLength);
    for (const [j, r] of msg.header().buffers.entries()) {
      if (Number(r.offset) % 8 !== 0) fail(`Block ${i} buffer ${j} offset ${r.offset} unaligned`);
      if (Number(r.offset) + Number(r.length) > b.bodyLength)
        fail(`Block ${i} buffer ${j} outside the body`);
    }
    blocks.push(b);
  }
  // the schema message starts the stream part
  expectEq('schema message marker', dv.getUint32(8, true), 0xffffffff);
  const l = dv.getInt32(12, true);
  expectEq('schema message length % 8', (8 + l) % 8, 0);
  const sm = arrow.Message.decode(bytes.subarray(16, 16 + l));
  expectEq('schema message version', sm.version, arrow.MetadataVersion.V5);
  expectEq('schema message type', sm.headerType, arrow.MessageHeader.Schema);
  expectEq('first Block offset', blocks[0].offset, 16 + l);
  return blocks;
}

// ---- decoding --------------------------------------------------------------------------------

const TYPES = {
  time: (t) =>
    t.typeId === arrow.Type.Timestamp && t.unit === arrow.TimeUnit.NANOSECOND && !t.timezone,
  float64: (t) => t.typeId === arrow.Type.Float && t.precision === arrow.Precision.DOUBLE,
  int64: (t) => t.typeId === arrow.Type.Int && t.bitWidth === 64 && t.isSigned === true,
  string: (t) => t.typeId === arrow.Type.Utf8,
  bool: (t) => t.typeId === arrow.Type.Bool,
};

// Reads row i exactly: timestamps as BigInt nanoseconds from the raw values, not the
// millisecond float the getter returns.
function cell(vec, i, kind) {
  if (!vec.isValid(i)) return null;
  if (kind === 'time') {
    let row = i;
    for (const d of vec.data) {
      if (row < d.length) return d.values[d.offset + row];
      row -= d.length;
    }
    fail(`row ${i} beyond the column`);
  }
  return vec.get(i);
}

function wantCell(v, kind) {
  if (v === null) return null;
  switch (kind) {
    case 'time':
    case 'int64':
      return BigInt(v);
    case 'float64':
      return v === 'NaN' ? NaN : v === 'Inf' ? Infinity : v === '-Inf' ? -Infinity : Number(v);
    default:
      return v;
  }
}

function checkMap(what, got, want) {
  const g = Object.fromEntries(got ?? new Map());
  const gk = Object.keys(g).sort(), wk = Object.keys(want).sort();
  expectEq(`${what} keys`, gk.join(','), wk.join(','));
  for (const k of wk) expectEq(`${what} "${k}"`, g[k], want[k]);
}

function checkTable(label, schema, batches, exp) {
  checkMap(`${label}schema metadata`, schema.metadata, exp.metadata);
  expectEq(`${label}field count`, schema.fields.length, exp.fields.length);
  const rows = batches.reduce((n, b) => n + b.numRows, 0);
  expectEq(`${label}rows`, rows, exp.rows);
  exp.fields.forEach((ef, c) => {
    const f = schema.fields[c];
    const where = `${label}field ${c} (${JSON.stringify(ef.name)})`;
    expectEq(`${where} name`, f.name, ef.name);
    if (!TYPES[ef.type](f.type)) fail(`${where} type: got ${f.type}, want ${ef.type}`);
    expectEq(`${where} nullable`, f.nullable, ef.nullable);
    checkMap(`${where} metadata`, f.metadata, ef.metadata);
    let nulls = 0, r = 0;
    for (const b of batches) {
      const vec = b.getChildAt(c);
      if (!vec) fail(`${where} missing in a record batch`);
      if (!TYPES[ef.type](vec.type)) fail(`${where} batch type ${vec.type}`);
      nulls += vec.nullCount;
      for (let i = 0; i < vec.length; i++, r++) {
        const got = cell(vec, i, ef.type), want = wantCell(ef.values[r], ef.type);
        if (!Object.is(got, want)) fail(`${where} row ${r}: got ${fmt(got)}, want ${fmt(want)}`);
      }
    }
    expectEq(`${where} null count`, nulls, ef.nullCount);
  });
}

// The frame's JSON form must say the same: values column-major, times in ms plus "nanos",
// non-finite floats as null plus "entities".
function checkFrameJson(text, exp) {
  let j;
  try {
    j = JSON.parse(text);
  } catch (e) {
    fail(`frame JSON does not parse: ${e.message}`);
  }
  const s = j.schema;
  expectEq('json name', s.name ?? '', exp.metadata.name);
  expectEq('json refId', s.refId ?? '', exp.metadata.refId);
  expectEq('json meta', JSON.stringify(s.meta ?? null),
    JSON.stringify(exp.metadata.meta === undefined ? null : JSON.parse(exp.metadata.meta)));
  const frames = { time: 'time.Time', float64: 'float64', int64: 'int64', string: 'string',
    bool: 'bool' };
  expectEq('json field count', s.fields.length, exp.fields.length);
  exp.fields.forEach((ef, c) => {
    const f = s.fields[c], where = `json field ${c}`;
    expectEq(`${where} name`, f.name ?? '', ef.name);
    expectEq(`${where} type`, f.type, ef.metadata.tstype);
    expectEq(`${where} typeInfo.frame`, f.typeInfo.frame, frames[ef.type]);
    expectEq(`${where} nullable`, f.typeInfo.nullable ?? false, ef.nullable);
    for (const k of ['labels', 'config'])
      expectEq(`${where} ${k}`, JSON.stringify(f[k] ?? null),
        JSON.stringify(ef.metadata[k] === undefined ? null : JSON.parse(ef.metadata[k])));
    const vals = j.data.values[c], ent = j.data.entities?.[c], nanos = j.data.nanos?.[c];
    expectEq(`${where} value count`, vals.length, ef.values.length);
    ef.values.forEach((w, r) => {
      const want = wantCell(w, ef.type), got = vals[r];
      let dec = got, cmp = want;
      if (ef.type === 'time' && got !== null)
        dec = BigInt(got) * 1000000n + BigInt(nanos ? nanos[r] : 0);
      else if (ef.type === 'int64' && want !== null)
        cmp = Number(want); // JSON.parse rounds beyond 2^53 exactly as Number() does
      else if (ef.type === 'float64' && got === null && want !== null) {
        const kind = Number.isNaN(want) ? 'NaN' : want > 0 ? 'Inf' : 'NegInf';
        dec = ent?.[kind]?.includes(r) ? want : null;
      }
      if (!Object.is(dec, cmp)) fail(`${where} row ${r}: got ${fmt(got)}, want ${fmt(want)}`);
    });
  });
}

function checkBytes(bytes, exp, frameJson) {
  checkContainer(bytes);
  // 1. the file reader: footer schema, footer Blocks
  const reader = arrow.RecordBatchReader.from(bytes);
  reader.open();
  if (!reader.isFile()) fail('not read as an Arrow IPC file');
  const batches = [];
  for (let i = 0; i < reader.numRecordBatches; i++) {
    const b = reader.readRecordBatch(i);
    if (!b) fail(`record batch ${i} unreadable`);
    batches.push(b);
  }
  expectEq('dictionaries', reader.numDictionaries, 0);
  // 2. tableFromIPC on the same bytes
  const table = arrow.tableFromIPC(bytes);
  // 3. the stream part alone (schema message, batches, end-of-stream marker)
  const stream = arrow.RecordBatchStreamReader.from(bytes.subarray(8));
  stream.open();
  const sschema = stream.schema;
  if (!sschema) fail('stream part: no schema message');
  const sbatches = [...stream];
  if (exp) {
    checkTable('', reader.schema, batches, exp);
    checkTable('tableFromIPC: ', table.schema, table.batches, exp);
    checkTable('stream part: ', sschema, sbatches, exp);
    if (frameJson !== undefined) checkFrameJson(frameJson, exp);
  }
  return { rows: batches.reduce((n, b) => n + b.numRows, 0), fields: reader.schema.fields.length };
}

// ---- corruption ------------------------------------------------------------------------------

function corruptions(bytes) {
  const out = [];
  const dv = (b) => new DataView(b.buffer, b.byteOffset, b.byteLength);
  out.push(['truncated by one byte', bytes.slice(0, bytes.length - 1)]);
  let b = bytes.slice();
  dv(b).setInt32(b.length - 10, dv(b).getInt32(b.length - 10, true) + 8, true);
  out.push(['footer length off by 8', b]);
  b = bytes.slice();
  b[b.length - 1] ^= 0x20;
  out.push(['trailing magic damaged', b]);
  const blocks = (() => {
    try {
      return checkContainer(bytes);
    } catch {
      return [];
    }
  })();
  if (blocks.length) {
    const blk = blocks[0];
    b = bytes.slice();
    b[blk.offset] = 0;
    out.push(['record batch continuation marker zeroed', b]);
    const msg = arrow.Message.decode(bytes.subarray(blk.offset + 8, blk.offset + blk.metaDataLength));
    const first = msg.header().buffers.find((r) => Number(r.length) > 0);
    if (first && Number(msg.header().length) > 0) {
      // the lowest bit of its last byte: a validity or bool bit of an existing row, or the
      // exponent of a double (so even a NaN changes), or high bits of an integer or offset
      b = bytes.slice();
      b[blk.offset + blk.metaDataLength + Number(first.offset) + Number(first.length) - 1] ^= 1;
      out.push(['last byte of the first non-empty body buffer changed', b]);
    }
    // an 8-byte shift of the Block offset in the footer
    const flen = dv(bytes).getInt32(bytes.length - 10, true);
    const foff = bytes.length - 10 - flen;
    b = bytes.slice();
    const v = dv(b);
    for (let p = foff; p + 8 <= b.length - 10; p += 8) {
      if (v.getBigInt64(p, true) === BigInt(blk.offset) &&
          v.getInt32(p + 8, true) === blk.metaDataLength) {
        v.setBigInt64(p, BigInt(blk.offset + 8), true);
        out.push(['Block offset moved by 8', b]);
        break;
      }
    }
  }
  return out;
}

// ---- driver ----------------------------------------------------------------------------------

function readIfExists(p) {
  return existsSync(p) ? readFileSync(p, 'utf8') : undefined;
}

function run(file, needExpect, corrupt) {
  const base = file.replace(/\.arrow$/, '');
  const expText = readIfExists(`${base}.json`);
  if (needExpect && expText === undefined) fail(`no expectation ${basename(base)}.json`);
  const exp = expText === undefined ? undefined : JSON.parse(expText);
  const frameJson = readIfExists(`${base}.frame.json`);
  const bytes = new Uint8Array(readFileSync(file));
  const res = checkBytes(bytes, exp, frameJson);
  let caught = 0;
  if (corrupt) {
    for (const [what, damaged] of corruptions(bytes)) {
      try {
        checkBytes(damaged, exp, undefined);
      } catch {
        caught++;
        continue;
      }
      fail(`damaged copy accepted: ${what}`);
    }
  }
  return { ...res, caught };
}

const args = process.argv.slice(2);
const corrupt = args.includes('--corrupt');
const paths = args.filter((a) => a !== '--corrupt');
if (!paths.length) {
  console.error('usage: node decode_frames.mjs [--corrupt] FILE.arrow|DIR...');
  process.exit(2);
}
let ok = 0, bad = 0;
for (const p of paths) {
  let files;
  try {
    files = statSync(p).isDirectory()
      ? readdirSync(p).filter((f) => f.endsWith('.arrow')).sort().map((f) => [join(p, f), true])
      : [[p, false]];
  } catch (e) {
    console.error(`decode_frames: ${p}: ${e.message}`);
    process.exit(1);
  }
  if (!files.length) {
    console.error(`decode_frames: ${p}: no .arrow files`);
    bad++;
  }
  for (const [f, needExpect] of files) {
    try {
      const r = run(f, needExpect, corrupt);
      console.log(`ok   ${f}: ${r.fields} fields, ${r.rows} rows` +
        (corrupt ? `, ${r.caught} damaged copies rejected` : ''));
      ok++;
    } catch (e) {
      console.error(`FAIL ${f}: ${e instanceof Mismatch ? '' : 'decode error: '}${e.message}`);
      bad++;
    }
  }
}
console.log(`${ok} passed, ${bad} failed`);
process.exit(bad ? 1 : 0);
