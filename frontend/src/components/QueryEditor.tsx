/*
 * QueryEditor.tsx - one upstream call and how its JSON answer becomes a frame (SPEC section 7):
 * method, path, params, headers, body; root, columns, format; cacheTtl, split, live.
 */
import React from 'react';
import { css } from '@emotion/css';

import { GrafanaTheme2, QueryEditorProps, SelectableValue } from '@grafana/data';
import { Button, IconButton, InlineField, InlineFieldRow, InlineSwitch, Input, RadioButtonGroup, Select, TextArea, useStyles2 } from '@grafana/ui';

import { Row } from './fields';
import { KeyValueEditor } from './KeyValueEditor';
import { amountText, parseAmount } from './options';
import type { CachingProxyDataSource } from '../datasource';
import {
  COLUMN_TYPES,
  CachingProxyOptions,
  CachingProxyQuery,
  ColumnType,
  DEFAULT_QUERY,
  PLACEHOLDERS,
  QUERY_METHODS,
  QueryColumn,
  QueryFormat,
  TIME_FORMATS,
  TimeFormat,
} from '../types';

export type Props = QueryEditorProps<CachingProxyDataSource, CachingProxyQuery, CachingProxyOptions>;

const LABEL = 14;

const METHOD_OPTIONS = QUERY_METHODS.map((m) => ({ value: m, label: m }));
const TYPE_OPTIONS: Array<SelectableValue<ColumnType | ''>> = [{ value: '', label: 'auto' }, ...COLUMN_TYPES.map((t) => ({ value: t, label: t }))];
const TIME_FORMAT_OPTIONS: Array<SelectableValue<TimeFormat | ''>> = [
  { value: '', label: 'auto' },
  ...TIME_FORMATS.map((t) => ({ value: t, label: t })),
];

const getStyles = (theme: GrafanaTheme2) => ({
  hint: css({ color: theme.colors.text.secondary, fontSize: theme.typography.bodySmall.fontSize, margin: theme.spacing(0.5, 0, 1) }),
  code: css({ fontFamily: theme.typography.fontFamilyMonospace, marginRight: theme.spacing(1), whiteSpace: 'nowrap' }),
});

/** A choice of the options row (format today; any enumerated query option reads the same). */
function ChoiceOption<T>(p: { label: string; tooltip: string; value: T; options: Array<SelectableValue<T>>; onChange: (v: T) => void }) {
  return (
    <InlineField label={p.label} labelWidth={LABEL} tooltip={p.tooltip}>
      <RadioButtonGroup<T> options={p.options} value={p.value} onChange={p.onChange} />
    </InlineField>
  );
}

function ColumnsEditor({ columns, onChange }: { columns: QueryColumn[]; onChange: (c: QueryColumn[] | undefined) => void }) {
  const set = (next: QueryColumn[]) => onChange(next.length ? next : undefined);
  const edit = (i: number, patch: Partial<QueryColumn>) =>
    set(
      columns.map((c, j) => {
        if (j !== i) {
          return c;
        }
        const n: QueryColumn = { ...c, ...patch };
        for (const k of ['name', 'type', 'timeFormat'] as const) {
          if (!n[k]) {
            delete n[k];
          }
        }
        if (n.type && n.type !== 'time') {
          delete n.timeFormat;
        }
        return n;
      })
    );
  return (
    <div data-testid="columns">
      {columns.map((c, i) => (
        <Row key={i} testId={`column-${i + 1}`}>
          <Input
            id={`cp-column-${i + 1}-selector`}
            aria-label={`Column ${i + 1} selector`}
            width={20}
            placeholder="selector (ts)"
            value={c.selector}
            onChange={(e) => edit(i, { selector: e.currentTarget.value })}
          />
          <Input
            id={`cp-column-${i + 1}-name`}
            aria-label={`Column ${i + 1} name`}
            width={16}
            placeholder="name"
            value={c.name ?? ''}
            onChange={(e) => edit(i, { name: e.currentTarget.value })}
          />
          <RadioButtonGroup<ColumnType | ''>
            size="sm"
            aria-label={`Column ${i + 1} type`}
            options={TYPE_OPTIONS}
            value={c.type ?? ''}
            onChange={(t) => edit(i, { type: t || undefined })}
          />
          {(c.type === 'time' || c.timeFormat) && (
            <RadioButtonGroup<TimeFormat | ''>
              size="sm"
              aria-label={`Column ${i + 1} time format`}
              options={TIME_FORMAT_OPTIONS}
              value={c.timeFormat ?? ''}
              onChange={(t) => edit(i, { timeFormat: t || undefined })}
            />
          )}
          <IconButton name="times" aria-label={`Remove column ${i + 1}`} onClick={() => set(columns.filter((_, j) => j !== i))} />
        </Row>
      ))}
      <Button variant="secondary" size="sm" icon="plus" onClick={() => set([...columns, { selector: '' }])}>
        Add column
      </Button>
    </div>
  );
}

export function QueryEditor({ query, onChange, onRunQuery }: Props) {
  const styles = useStyles2(getStyles);
  const q: CachingProxyQuery = { ...DEFAULT_QUERY, ...query };
  const change = (patch: Partial<CachingProxyQuery>) => {
    const next: CachingProxyQuery = { ...query, ...patch };
    for (const [k, v] of Object.entries(patch)) {
      if (v === undefined || v === '') {
        delete (next as unknown as Record<string, unknown>)[k];
      }
    }
    onChange(next);
  };
  const changeAndRun = (patch: Partial<CachingProxyQuery>) => {
    change(patch);
    onRunQuery();
  };
  const hasBody = !['GET', 'HEAD'].includes((q.method ?? 'GET').toUpperCase()) || Boolean(q.body);

  return (
    <div data-testid="query-editor">
      <InlineFieldRow>
        <InlineField label="Method" labelWidth={LABEL}>
          <Select
            inputId="cp-query-method"
            width={14}
            options={METHOD_OPTIONS}
            value={(q.method ?? 'GET').toUpperCase()}
            allowCustomValue
            onChange={(v) => changeAndRun({ method: v.value })}
          />
        </InlineField>
        <InlineField label="Path" labelWidth={8} grow tooltip="Relative to the data source URL; a query string may follow">
          <Input
            id="cp-query-path"
            placeholder="/items?since=${__from}"
            value={query.path ?? ''}
            onChange={(e) => change({ path: e.currentTarget.value })}
            onBlur={onRunQuery}
          />
        </InlineField>
      </InlineFieldRow>
      <InlineField label="Params" labelWidth={LABEL} tooltip="Query parameters; a name given twice repeats the parameter">
        <KeyValueEditor kind="param" value={query.params} repeat onChange={(params) => change({ params })} onBlur={onRunQuery} />
      </InlineField>
      <InlineField label="Headers" labelWidth={LABEL} tooltip="Request headers; credentials and cookies are never sent from here">
        <KeyValueEditor kind="header" value={query.headers} repeat={false} onChange={(h) => change({ headers: h as Record<string, string> | undefined })} onBlur={onRunQuery} />
      </InlineField>
      {hasBody && (
        <InlineField label="Body" labelWidth={LABEL} grow>
          <TextArea id="cp-query-body" rows={3} value={query.body ?? ''} onChange={(e) => change({ body: e.currentTarget.value })} onBlur={onRunQuery} />
        </InlineField>
      )}
      <div className={styles.hint} data-testid="placeholders">
        Placeholders in path, params and body (time range aligned to the data source&apos;s step):{' '}
        {PLACEHOLDERS.map((p) => (
          <span key={p.name} className={styles.code} title={p.meaning}>
            {p.name}
          </span>
        ))}
      </div>
      <InlineField label="Root" labelWidth={LABEL} tooltip="Selector of the array of rows: data.items, items[0].points, or $ for the whole answer">
        <Input id="cp-query-root" width={40} placeholder="$" value={query.root ?? ''} onChange={(e) => change({ root: e.currentTarget.value })} onBlur={onRunQuery} />
      </InlineField>
      <InlineField label="Columns" labelWidth={LABEL} tooltip="None: inferred from the rows">
        <ColumnsEditor columns={query.columns ?? []} onChange={(columns) => change({ columns })} />
      </InlineField>
      <InlineFieldRow>
        <ChoiceOption<QueryFormat>
          label="Format"
          tooltip="timeseries puts the first time column first and sorts by it"
          value={q.format ?? 'table'}
          options={[
            { value: 'table', label: 'Table' },
            { value: 'timeseries', label: 'Time series' },
          ]}
          onChange={(format) => changeAndRun({ format })}
        />
        <InlineField label="Cache TTL" labelWidth={LABEL} tooltip="Overrides the data source's query TTL for this query (e.g. 5m; 0 never caches)">
          <Input
            id="cp-query-cacheTtl"
            width={12}
            placeholder="queryTtl"
            value={amountText(query.cacheTtl)}
            onChange={(e) => change({ cacheTtl: parseAmount(e.currentTarget.value) })}
            onBlur={onRunQuery}
          />
        </InlineField>
        <InlineField label="Split" labelWidth={LABEL} tooltip="Cut the time range into pieces of this length (e.g. 1h), each cached on its own; needs ${__from}/${__to} in the request and a time column. off: never; empty: the data source's query split">
          <Input
            id="cp-query-split"
            width={12}
            placeholder="querySplit"
            value={query.split === 'off' ? 'off' : amountText(query.split)}
            onChange={(e) => {
              const v = e.currentTarget.value.trim();
              change({ split: v === 'off' ? 'off' : parseAmount(v) });
            }}
            onBlur={onRunQuery}
          />
        </InlineField>
      </InlineFieldRow>
      <InlineFieldRow>
        <InlineField label="Live" labelWidth={LABEL} tooltip="Keep the panel updating: the plugin polls this query once per interval for every viewer together (Grafana Live)">
          <InlineSwitch id="cp-query-live" value={query.live === true} onChange={(e) => changeAndRun({ live: e.currentTarget.checked || undefined })} />
        </InlineField>
        {query.live && (
          <InlineField label="Poll every" labelWidth={LABEL} tooltip="Poll interval (e.g. 5s; at least 500ms). Empty: the query's interval">
            <Input
              id="cp-query-liveInterval"
              width={12}
              placeholder="interval"
              value={amountText(query.liveInterval)}
              onChange={(e) => change({ liveInterval: parseAmount(e.currentTarget.value) })}
              onBlur={onRunQuery}
            />
          </InlineField>
        )}
      </InlineFieldRow>
    </div>
  );
}
