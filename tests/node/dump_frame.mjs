#!/usr/bin/env node
// dump_frame.mjs - decodes Arrow IPC file bytes (read from the given paths) with apache-arrow,
// the way Grafana reads a frame (file format, footer first), and prints one JSON object per
// file: schema metadata, fields (name, type, nullable, metadata) and column values. Timestamps
// are printed as strings of nanoseconds, so no precision is lost.
//
// usage: node dump_frame.mjs FILE.arrow...
import { readFileSync } from 'node:fs';

const arrow = await import('apache-arrow');

function typeName(t) {
  switch (t.typeId) {
    case arrow.Type.Timestamp:
      return `timestamp[${['s', 'ms', 'us', 'ns'][t.unit]}${t.timezone ? ',' + t.timezone : ''}]`;
    case arrow.Type.Float:
      return `float${[16, 32, 64][t.precision]}`;
    case arrow.Type.Int:
      return `${t.isSigned ? 'int' : 'uint'}${t.bitWidth}`;
    case arrow.Type.Utf8:
      return 'utf8';
    case arrow.Type.Bool:
      return 'bool';
    default:
      return String(t);
  }
}

for (const path of process.argv.slice(2)) {
  const bytes = new Uint8Array(readFileSync(path));
  const reader = arrow.RecordBatchReader.from(bytes);
  reader.open();
  if (!reader.isFile()) throw new Error(`${path}: not an Arrow IPC file`);
  const batches = [];
  for (let i = 0; i < reader.numRecordBatches; i++) batches.push(reader.readRecordBatch(i));
  const schema = reader.schema;
  const out = {
    metadata: Object.fromEntries(schema.metadata ?? new Map()),
    fields: schema.fields.map((f) => ({
      name: f.name, type: typeName(f.type), nullable: f.nullable,
      metadata: Object.fromEntries(f.metadata ?? new Map()),
    })),
    rows: batches.reduce((n, b) => n + b.numRows, 0),
    columns: schema.fields.map(() => []),
  };
  for (const b of batches) {
    schema.fields.forEach((f, c) => {
      const vec = b.getChildAt(c);
      for (let i = 0; i < vec.length; i++) {
        if (!vec.isValid(i)) { out.columns[c].push(null); continue; }
        if (f.type.typeId === arrow.Type.Timestamp) {
          let row = i;
          for (const d of vec.data) {
            if (row < d.length) { out.columns[c].push(String(d.values[d.offset + row])); break; }
            row -= d.length;
          }
        } else {
          const v = vec.get(i);
          out.columns[c].push(typeof v === 'bigint' ? String(v) : v);
        }
      }
    });
  }
  console.log(JSON.stringify(out));
}
