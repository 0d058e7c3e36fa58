/*
 * HeadersSection.tsx - custom headers added to every upstream request, in Grafana's convention:
 * jsonData httpHeaderName1..N and secureJsonData httpHeaderValue1..N. The plugin stops reading
 * at the first gap, so removing a header renumbers the ones after it; their stored values cannot
 * move with them (secrets are never read back), so those must be entered again.
 */
import React from 'react';

import { Button, IconButton, Input, SecretInput } from '@grafana/ui';

import { Settings } from './options';
import { Row, normalizeToken } from './fields';

export interface HeaderRow {
  name: string;
  configured: boolean;
  /** the value typed in this session */
  value: string;
}

export function readHeaders(o: Settings): HeaderRow[] {
  const rows: HeaderRow[] = [];
  for (let i = 1; ; i++) {
    const name = o.jsonData[`httpHeaderName${i}`];
    if (name === undefined) {
      return rows;
    }
    const configured = Boolean(o.secureJsonFields?.[`httpHeaderValue${i}`]);
    rows.push({ name, configured, value: configured ? '' : (o.secureJsonData?.[`httpHeaderValue${i}`] ?? '') });
  }
}

/**
 * Writes rows back as names 1..N over the `before` rows there were. A configured row keeps its
 * stored value, so callers reset the rows that move to another index; slots past the end are
 * cleared, stored values included.
 */
export function writeHeaders(o: Settings, rows: HeaderRow[], before: number): Settings {
  const jsonData = { ...o.jsonData };
  const secureJsonData = { ...(o.secureJsonData ?? {}) };
  const secureJsonFields = { ...(o.secureJsonFields ?? {}) };
  const n = Math.max(rows.length, before);
  for (let i = 1; i <= n; i++) {
    const row = rows[i - 1];
    const nk = `httpHeaderName${i}` as const;
    const vk = `httpHeaderValue${i}` as const;
    if (!row) {
      delete jsonData[nk];
      delete secureJsonData[vk];
      if (secureJsonFields[vk]) {
        secureJsonFields[vk] = false;
        secureJsonData[vk] = '';
      }
      continue;
    }
    jsonData[nk] = row.name;
    if (row.configured) {
      secureJsonFields[vk] = true;
      delete secureJsonData[vk];
    } else {
      if (secureJsonFields[vk]) {
        secureJsonFields[vk] = false;
      }
      secureJsonData[vk] = row.value;
    }
  }
  return { ...o, jsonData, secureJsonData, secureJsonFields };
}

interface Props {
  options: Settings;
  onChange: (o: Settings) => void;
}

export function HeadersSection({ options, onChange }: Props) {
  const rows = readHeaders(options);
  const update = (next: HeaderRow[]) => onChange(writeHeaders(options, next, rows.length));
  return (
    <div data-testid="custom-headers">
      {rows.map((row, i) => (
        <Row key={i}>
          <Input
            id={`cp-httpHeaderName${i + 1}`}
            aria-label={`Header ${i + 1} name`}
            width={30}
            placeholder="X-Tenant"
            value={row.name}
            invalid={row.name !== '' && normalizeToken(row.name) === undefined}
            onChange={(e) => update(rows.map((r, j) => (j === i ? { ...r, name: e.currentTarget.value } : r)))}
          />
          <SecretInput
            id={`cp-httpHeaderValue${i + 1}`}
            aria-label={`Header ${i + 1} value`}
            width={40}
            placeholder="Value"
            isConfigured={row.configured}
            value={row.value}
            onChange={(e) => update(rows.map((r, j) => (j === i ? { ...r, value: e.currentTarget.value } : r)))}
            onReset={() => update(rows.map((r, j) => (j === i ? { ...r, configured: false, value: '' } : r)))}
          />
          <IconButton
            name="trash-alt"
            aria-label={`Remove header ${i + 1}`}
            onClick={() =>
              // rows after the removed one move down an index: their stored values stay behind
              update(rows.filter((_, j) => j !== i).map((r, j) => (j >= i && r.configured ? { ...r, configured: false, value: '' } : r)))
            }
          />
        </Row>
      ))}
      <Button variant="secondary" icon="plus" size="sm" onClick={() => update([...rows, { name: '', configured: false, value: '' }])}>
        Add header
      </Button>
    </div>
  );
}
