/*
 * KeyValueEditor.tsx - rows of name and value, for a query's params and headers. The rows are
 * kept as typed (a new row has no name yet); the object handed out holds the named ones, a name
 * given twice becoming a list (params repeat a parameter that way).
 */
import React, { useState } from 'react';

import { Button, IconButton, Input } from '@grafana/ui';

import { Row } from './fields';

export type KV = [string, string];

export function toRows(obj: Record<string, unknown> | undefined): KV[] {
  const rows: KV[] = [];
  for (const [k, v] of Object.entries(obj ?? {})) {
    for (const one of Array.isArray(v) ? v : [v]) {
      rows.push([k, one === undefined || one === null ? '' : String(one)]);
    }
  }
  return rows;
}

export function fromRows(rows: KV[], repeat: boolean): Record<string, string | string[]> | undefined {
  const out: Record<string, string | string[]> = {};
  for (const [k, v] of rows) {
    const key = k.trim();
    if (!key) {
      continue;
    }
    const prev = out[key];
    if (prev === undefined || !repeat) {
      out[key] = v;
    } else {
      out[key] = Array.isArray(prev) ? [...prev, v] : [prev, v];
    }
  }
  return Object.keys(out).length ? out : undefined;
}

interface Props {
  /** "param" or "header": labels and ids */
  kind: string;
  value: Record<string, unknown> | undefined;
  /** a name given twice becomes a list (params) or the last one wins (headers) */
  repeat: boolean;
  onChange: (v: Record<string, string | string[]> | undefined) => void;
  onBlur?: () => void;
}

export function KeyValueEditor({ kind, value, repeat, onChange, onBlur }: Props) {
  const [rows, setRows] = useState<KV[]>(() => toRows(value));
  const update = (next: KV[]) => {
    setRows(next);
    onChange(fromRows(next, repeat));
  };
  return (
    <div data-testid={`${kind}s`}>
      {rows.map(([k, v], i) => (
        <Row key={i}>
          <Input
            id={`cp-${kind}-${i + 1}-name`}
            aria-label={`${kind} ${i + 1} name`}
            width={24}
            placeholder="name"
            value={k}
            onBlur={onBlur}
            onChange={(e) => update(rows.map((r, j) => (j === i ? [e.currentTarget.value, r[1]] : r)))}
          />
          <Input
            id={`cp-${kind}-${i + 1}-value`}
            aria-label={`${kind} ${i + 1} value`}
            width={40}
            placeholder="value"
            value={v}
            onBlur={onBlur}
            onChange={(e) => update(rows.map((r, j) => (j === i ? [r[0], e.currentTarget.value] : r)))}
          />
          <IconButton name="times" aria-label={`Remove ${kind} ${i + 1}`} onClick={() => update(rows.filter((_, j) => j !== i))} />
        </Row>
      ))}
      <Button variant="secondary" size="sm" icon="plus" onClick={() => setRows([...rows, ['', '']])}>
        Add {kind}
      </Button>
    </div>
  );
}
