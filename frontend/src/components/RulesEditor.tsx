/*
 * RulesEditor.tsx - the ordered authorization rules (jsonData rules, SPEC section 5): first
 * match wins. A list left empty is saved as absent ("matches everything"), since an empty list
 * saved as [] would match nothing.
 */
import React from 'react';
import { css } from '@emotion/css';

import { GrafanaTheme2 } from '@grafana/data';
import { Button, Checkbox, Field, IconButton, RadioButtonGroup, Stack, useStyles2 } from '@grafana/ui';

import { ListField, normalizeGlob, normalizeMethod } from './fields';
import { AuthRule, ROLES, Role, RuleEffect } from '../types';

interface Props {
  rules: AuthRule[];
  onChange: (rules: AuthRule[] | undefined) => void;
}

/** Drops empty lists, so they keep meaning "any". */
export function cleanRule(r: AuthRule): AuthRule {
  const out: AuthRule = { effect: r.effect };
  for (const k of ['roles', 'users', 'orgs', 'methods', 'paths'] as const) {
    const v = r[k];
    if (v && v.length) {
      (out as unknown as Record<string, unknown>)[k] = v;
    }
  }
  return out;
}

export function moveRule(rules: AuthRule[], from: number, to: number): AuthRule[] {
  if (to < 0 || to >= rules.length) {
    return rules;
  }
  const out = [...rules];
  const [r] = out.splice(from, 1);
  out.splice(to, 0, r);
  return out;
}

const getStyles = (theme: GrafanaTheme2) => ({
  rule: css({
    border: `1px solid ${theme.colors.border.weak}`,
    borderRadius: theme.shape.radius.default,
    padding: theme.spacing(1, 2),
    marginBottom: theme.spacing(1),
  }),
  title: css({ fontWeight: theme.typography.fontWeightMedium, marginRight: theme.spacing(2) }),
  list: css({ marginBottom: theme.spacing(2) }),
});

export function RulesEditor({ rules, onChange }: Props) {
  const styles = useStyles2(getStyles);
  const set = (next: AuthRule[]) => onChange(next.length ? next.map(cleanRule) : undefined);
  const edit = (i: number, patch: Partial<AuthRule>) => set(rules.map((r, j) => (j === i ? { ...r, ...patch } : r)));

  return (
    <div data-testid="rules" className={styles.list}>
      {rules.map((rule, i) => {
        const n = i + 1;
        return (
          <div className={styles.rule} key={i} data-testid={`rule-${n}`}>
            <Stack direction="row" alignItems="center" justifyContent="space-between">
              <Stack direction="row" alignItems="center">
                <span className={styles.title}>Rule {n}</span>
                <RadioButtonGroup<RuleEffect>
                  size="sm"
                  options={[
                    { value: 'allow', label: 'Allow' },
                    { value: 'deny', label: 'Deny' },
                  ]}
                  value={rule.effect}
                  onChange={(effect) => edit(i, { effect })}
                />
              </Stack>
              <Stack direction="row">
                <IconButton name="arrow-up" aria-label={`Move rule ${n} up`} disabled={i === 0} onClick={() => set(moveRule(rules, i, i - 1))} />
                <IconButton
                  name="arrow-down"
                  aria-label={`Move rule ${n} down`}
                  disabled={i === rules.length - 1}
                  onClick={() => set(moveRule(rules, i, i + 1))}
                />
                <IconButton name="trash-alt" aria-label={`Remove rule ${n}`} onClick={() => set(rules.filter((_, j) => j !== i))} />
              </Stack>
            </Stack>
            <Field label="Roles" description="A role matches itself and every higher role. None ticked: any role.">
              <Stack direction="row" gap={2}>
                {ROLES.map((role) => (
                  <Checkbox
                    key={role}
                    id={`cp-rule-${n}-role-${role}`}
                    label={role}
                    value={Boolean(rule.roles?.includes(role))}
                    onChange={(e) => {
                      const on = e.currentTarget.checked;
                      const roles = ROLES.filter((r: Role) => (r === role ? on : Boolean(rule.roles?.includes(r))));
                      edit(i, { roles });
                    }}
                  />
                ))}
              </Stack>
            </Field>
            <ListField
              id={`cp-rule-${n}-users`}
              label="Users"
              description="Logins or emails. Empty: anyone."
              value={rule.users}
              onChange={(users) => edit(i, { users })}
            />
            <ListField
              id={`cp-rule-${n}-orgs`}
              label="Orgs"
              description="Numeric org ids. Empty: any org."
              value={rule.orgs?.map(String)}
              normalize={(s) => (/^\d+$/.test(s.trim()) ? s.trim() : undefined)}
              onChange={(orgs) => edit(i, { orgs: orgs?.map(Number) })}
            />
            <ListField
              id={`cp-rule-${n}-methods`}
              label="Methods"
              description="Empty: any method."
              placeholder="GET"
              value={rule.methods}
              normalize={normalizeMethod}
              onChange={(methods) => edit(i, { methods })}
            />
            <ListField
              id={`cp-rule-${n}-paths`}
              label="Paths"
              description="Globs of upstream paths: * one segment, ** any depth. Empty: any path."
              placeholder="/api/**"
              value={rule.paths}
              normalize={normalizeGlob}
              onChange={(paths) => edit(i, { paths })}
            />
          </div>
        );
      })}
      <Button variant="secondary" icon="plus" size="sm" onClick={() => set([...rules, { effect: 'allow' }])}>
        Add rule
      </Button>
    </div>
  );
}
