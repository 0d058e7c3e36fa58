/*
 * ConfigEditor.tsx - the data source's settings page: connection, authentication, custom
 * headers, TLS, access limits, authorization, cache, and the live cache panel once saved.
 */
import React from 'react';

import { DataSourcePluginOptionsEditorProps } from '@grafana/data';
import { Field, FieldSet, Input } from '@grafana/ui';

import { AuthSection } from './AuthSection';
import { CachePanel } from './CachePanel';
import { CacheSection } from './CacheSection';
import { AmountField, ChoiceField, ListField, TextField, normalizeGlob, normalizeToken } from './fields';
import { HeadersSection } from './HeadersSection';
import { ModuleFields } from './ModuleFields';
import { Settings, setJson } from './options';
import { RulesEditor } from './RulesEditor';
import { TlsSection } from './TlsSection';
import { CachingProxyOptions, CachingProxySecureData, DEFAULTS, RuleEffect, effectiveAuthType } from '../types';

export type Props = DataSourcePluginOptionsEditorProps<CachingProxyOptions, CachingProxySecureData> & {
  /** the signed-in user's org role, for the cache panel; defaults to Grafana's boot data */
  orgRole?: string;
};

function urlProblem(url: string | undefined): string | undefined {
  const u = (url ?? '').trim();
  if (!u) {
    return 'Required: the upstream base URL';
  }
  if (!/^https?:\/\/[^/?#]/i.test(u)) {
    return 'Must start with http:// or https:// and name a host';
  }
  if (/[?#]/.test(u)) {
    return 'No query string or fragment';
  }
  if (/^https?:\/\/[^/]*@/i.test(u)) {
    return 'No credentials in the URL: use the authentication settings';
  }
  return undefined;
}

export function ConfigEditor({ options, onOptionsChange, orgRole }: Props) {
  const o = options as Settings;
  const jd = o.jsonData;
  const change = (next: Settings) => onOptionsChange(next);
  const authType = effectiveAuthType(jd, o.basicAuth);
  const urlError = urlProblem(o.url);

  return (
    <>
      <FieldSet label="Connection">
        <Field label="URL" description="Upstream base URL; calls to proxy/<path> go to URL/<path>" required invalid={Boolean(o.url) && Boolean(urlError)} error={urlError}>
          <Input id="cp-url" width={60} placeholder="https://api.example.com/v2" value={o.url ?? ''} onChange={(e) => change({ ...o, url: e.currentTarget.value })} />
        </Field>
        <Field label="Timeout" description={`Upstream timeout in seconds. Default: ${DEFAULTS.timeout}.`}>
          <Input
            id="cp-timeout"
            type="number"
            min={1}
            width={16}
            placeholder={String(DEFAULTS.timeout)}
            value={jd.timeout ?? ''}
            onChange={(e) => change(setJson(o, 'timeout', e.currentTarget.value === '' ? undefined : Number(e.currentTarget.value)))}
          />
        </Field>
        <Field
          label="Max connections"
          description={`Upstream connections at once; calls past it wait for one (within their timeout). Default: ${DEFAULTS.maxConnections}.`}
        >
          <Input
            id="cp-maxConnections"
            type="number"
            min={1}
            width={16}
            placeholder={String(DEFAULTS.maxConnections)}
            value={jd.maxConnections ?? ''}
            onChange={(e) => change(setJson(o, 'maxConnections', e.currentTarget.value === '' ? undefined : Number(e.currentTarget.value)))}
          />
        </Field>
        <TextField
          id="cp-healthPath"
          label="Health path"
          description={`Path "Save & test" calls on the upstream. Default: ${DEFAULTS.healthPath}.`}
          placeholder={DEFAULTS.healthPath}
          value={jd.healthPath}
          onChange={(v) => change(setJson(o, 'healthPath', v))}
        />
      </FieldSet>

      <FieldSet label="Authentication">
        <AuthSection options={o} onChange={change} />
      </FieldSet>

      <FieldSet label="Custom headers">
        <p>Added to every upstream request, whatever the authentication. Values are stored encrypted.</p>
        <HeadersSection options={o} onChange={change} />
      </FieldSet>

      <FieldSet label="TLS">
        <TlsSection options={o} onChange={change} />
      </FieldSet>

      <FieldSet label="Access">
        <ListField
          id="cp-allowedPaths"
          label="Allowed paths"
          description={`Globs of upstream paths that may be reached (* one segment, ** any depth); others answer 404. Default: ${DEFAULTS.allowedPaths.join(', ')}.`}
          placeholder={DEFAULTS.allowedPaths.join(', ')}
          value={jd.allowedPaths}
          normalize={normalizeGlob}
          onChange={(v) => change(setJson(o, 'allowedPaths', v))}
        />
        <ListField
          id="cp-forwardHeaders"
          label="Forwarded client headers"
          description={`Client headers passed upstream; all others are dropped. Default: ${DEFAULTS.forwardHeaders.join(', ')}.`}
          placeholder="Accept, Content-Type, ..."
          value={jd.forwardHeaders}
          normalize={normalizeToken}
          onChange={(v) => change(setJson(o, 'forwardHeaders', v))}
        />
        <AmountField
          id="cp-maxRequestBytes"
          label="Max request body"
          description="Larger request bodies answer 413."
          defaultText={DEFAULTS.maxRequestBytes}
          value={jd.maxRequestBytes}
          onChange={(v) => change(setJson(o, 'maxRequestBytes', v))}
        />
        <AmountField
          id="cp-maxResponseBytes"
          label="Max response size"
          description="Larger upstream answers fail with 502."
          defaultText={DEFAULTS.maxResponseBytes}
          value={jd.maxResponseBytes}
          onChange={(v) => change(setJson(o, 'maxResponseBytes', v))}
        />
      </FieldSet>

      <FieldSet label="Authorization">
        <p>Checked on every call and query before the cache: the first matching rule wins, else the default action.</p>
        <RulesEditor rules={jd.rules ?? []} onChange={(r) => change(setJson(o, 'rules', r))} />
        <ChoiceField<RuleEffect>
          id="cp-defaultAction"
          label="Default action"
          description={`When no rule matches. Default: ${DEFAULTS.defaultAction}.`}
          value={jd.defaultAction ?? DEFAULTS.defaultAction}
          options={[
            { value: 'allow', label: 'Allow' },
            { value: 'deny', label: 'Deny' },
          ]}
          onChange={(v) => change(setJson(o, 'defaultAction', v))}
        />
        <TextField
          id="cp-authzUrl"
          label="External authorization URL"
          description="POSTed each decision; 2xx allows, anything else denies (fail closed)."
          placeholder="https://authz.example.com/check"
          value={jd.authzUrl}
          invalid={Boolean(jd.authzUrl) && !/^https?:\/\//i.test(jd.authzUrl ?? '')}
          error="Must be an http(s) URL"
          onChange={(v) => change(setJson(o, 'authzUrl', v))}
        />
        <AmountField
          id="cp-authzCacheTtl"
          label="Authorization cache TTL"
          description="Decisions are kept this long per user, method and path."
          defaultText={DEFAULTS.authzCacheTtl}
          value={jd.authzCacheTtl}
          onChange={(v) => change(setJson(o, 'authzCacheTtl', v))}
        />
        {authType !== 'module' && <ModuleFields options={o} onChange={change} />}
      </FieldSet>

      <FieldSet label="Cache">
        <CacheSection options={o} onChange={change} />
      </FieldSet>

      {o.uid && (
        <FieldSet label="Cache status">
          <CachePanel uid={o.uid} orgRole={orgRole} />
        </FieldSet>
      )}
    </>
  );
}
