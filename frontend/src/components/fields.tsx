/*
 * fields.tsx - the small labelled inputs every editor section is built from. Each control has an
 * id, so its label is bound to it (screen readers, and tests that look fields up by label).
 */
import React from 'react';
import { css } from '@emotion/css';

import { Field, Input, SecretInput, SecretTextArea, Switch, TagsInput, RadioButtonGroup, useStyles2 } from '@grafana/ui';
import { GrafanaTheme2, SelectableValue } from '@grafana/data';

import { amountText, parseAmount } from './options';
import { Duration, Size } from '../types';

const WIDTH = 48;

const getRowStyles = (theme: GrafanaTheme2) => ({
  row: css({
    display: 'flex',
    flexWrap: 'wrap',
    alignItems: 'center',
    gap: theme.spacing(0.5),
    marginBottom: theme.spacing(0.5),
    '& > *': { flex: '0 0 auto' },
  }),
  top: css({ alignItems: 'flex-start' }),
});

/** One line of a repeated group (a header, a param, a column): its controls side by side. */
export function Row({ children, testId, alignTop }: { children: React.ReactNode; testId?: string; alignTop?: boolean }) {
  const s = useStyles2(getRowStyles);
  return (
    <div className={alignTop ? `${s.row} ${s.top}` : s.row} data-testid={testId}>
      {children}
    </div>
  );
}

interface TextFieldProps {
  id: string;
  label: string;
  description?: React.ReactNode;
  value: string | undefined;
  placeholder?: string;
  required?: boolean;
  invalid?: boolean;
  error?: string;
  width?: number;
  onChange: (value: string) => void;
}

export function TextField(p: TextFieldProps) {
  return (
    <Field label={p.label} description={p.description} required={p.required} invalid={p.invalid} error={p.error}>
      <Input
        id={p.id}
        width={p.width ?? WIDTH}
        value={p.value ?? ''}
        placeholder={p.placeholder}
        onChange={(e) => p.onChange(e.currentTarget.value)}
      />
    </Field>
  );
}

interface AmountFieldProps {
  id: string;
  label: string;
  description?: React.ReactNode;
  value: Duration | Size | undefined;
  /** the default, shown as placeholder and in the description */
  defaultText: string;
  onChange: (value: Duration | Size | undefined) => void;
}

/** A duration or size: "30s", "64MiB" or a plain number (seconds, bytes). */
export function AmountField(p: AmountFieldProps) {
  return (
    <Field
      label={p.label}
      description={
        <>
          {p.description}
          {p.description ? ' ' : ''}Default: {p.defaultText}.
        </>
      }
    >
      <Input
        id={p.id}
        width={24}
        value={amountText(p.value)}
        placeholder={p.defaultText}
        onChange={(e) => p.onChange(parseAmount(e.currentTarget.value))}
      />
    </Field>
  );
}

interface SecretFieldProps {
  id: string;
  label: string;
  description?: React.ReactNode;
  configured: boolean;
  /** what the user typed in this session; never the stored secret */
  value: string;
  placeholder?: string;
  multiline?: boolean;
  onChange: (value: string) => void;
  onReset: () => void;
}

export function SecretField(p: SecretFieldProps) {
  return (
    <Field label={p.label} description={p.description}>
      {p.multiline ? (
        <SecretTextArea
          id={p.id}
          cols={60}
          rows={4}
          isConfigured={p.configured}
          value={p.value}
          placeholder={p.placeholder}
          onChange={(e) => p.onChange(e.currentTarget.value)}
          onReset={p.onReset}
        />
      ) : (
        <SecretInput
          id={p.id}
          width={WIDTH}
          isConfigured={p.configured}
          value={p.value}
          placeholder={p.placeholder}
          onChange={(e) => p.onChange(e.currentTarget.value)}
          onReset={p.onReset}
        />
      )}
    </Field>
  );
}

interface ListFieldProps {
  id: string;
  label: string;
  description?: React.ReactNode;
  value: string[] | undefined;
  placeholder?: string;
  /** normalises an entered element; returning undefined rejects it */
  normalize?: (s: string) => string | undefined;
  onChange: (value: string[] | undefined) => void;
}

/** A list of strings, one tag each; an empty list is saved as absent. */
export function ListField(p: ListFieldProps) {
  const norm = p.normalize ?? ((s: string) => s.trim() || undefined);
  return (
    <Field label={p.label} description={p.description}>
      <TagsInput
        id={p.id}
        width={WIDTH}
        tags={p.value ?? []}
        placeholder={p.placeholder ?? 'Add and press Enter'}
        onChange={(tags) => {
          const out: string[] = [];
          for (const t of tags) {
            const n = norm(t);
            if (n !== undefined && !out.includes(n)) {
              out.push(n);
            }
          }
          p.onChange(out.length ? out : undefined);
        }}
      />
    </Field>
  );
}

interface SwitchFieldProps {
  id: string;
  label: string;
  description?: React.ReactNode;
  value: boolean;
  disabled?: boolean;
  onChange: (value: boolean) => void;
}

export function SwitchField(p: SwitchFieldProps) {
  return (
    <Field label={p.label} description={p.description} disabled={p.disabled}>
      <Switch id={p.id} value={p.value} disabled={p.disabled} onChange={(e) => p.onChange(e.currentTarget.checked)} />
    </Field>
  );
}

interface ChoiceFieldProps<T> {
  id: string;
  label: string;
  description?: React.ReactNode;
  value: T;
  options: Array<SelectableValue<T>>;
  disabled?: boolean;
  onChange: (value: T) => void;
}

export function ChoiceField<T>(p: ChoiceFieldProps<T>) {
  return (
    <Field label={p.label} description={p.description} disabled={p.disabled}>
      <RadioButtonGroup<T>
        id={p.id}
        options={p.options}
        value={p.value}
        disabled={p.disabled}
        onChange={(v) => p.onChange(v)}
      />
    </Field>
  );
}

/** Header names and methods are HTTP tokens. */
export function normalizeToken(s: string): string | undefined {
  const t = s.trim();
  return /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/.test(t) ? t : undefined;
}

export function normalizeMethod(s: string): string | undefined {
  const t = s.trim().toUpperCase();
  return /^[A-Z_-]+$/.test(t) ? t : undefined;
}

/** Path globs start with "/" ("api/x" becomes "/api/x"). */
export function normalizeGlob(s: string): string | undefined {
  const t = s.trim();
  if (!t || /[\u0000-\u001f\u007f\\]/.test(t)) {
    return undefined;
  }
  return t.startsWith('/') ? t : '/' + t;
}
