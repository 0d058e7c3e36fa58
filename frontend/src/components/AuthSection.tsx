/*
 * AuthSection.tsx - how the plugin authenticates towards the upstream (jsonData authType). Only
 * the fields the chosen type needs are shown; the type list and its keys are SPEC section 3.
 */
import React from 'react';

import { Alert, Field, RadioButtonGroup, Select } from '@grafana/ui';
import { SelectableValue } from '@grafana/data';

import { ChoiceField, ListField, SecretField, TextField, normalizeToken } from './fields';
import { ModuleFields } from './ModuleFields';
import { Settings, isConfigured, patchJson, pendingSecret, resetSecure, setJson, setSecure } from './options';
import { AuthType, CachingProxySecureData, DEFAULTS, HMAC_ALGORITHMS, HmacAlgorithm, effectiveAuthType } from '../types';

const AUTH_OPTIONS: Array<SelectableValue<AuthType>> = [
  { value: 'none', label: 'None', description: 'No credentials, or only custom headers' },
  { value: 'basic', label: 'Basic auth', description: 'User and password' },
  { value: 'bearer', label: 'Bearer token', description: 'Authorization: Bearer <token>' },
  { value: 'apiKey', label: 'API key', description: 'A key in a header or a query parameter' },
  { value: 'oauth2', label: 'OAuth2 client credentials', description: 'A token fetched once and shared by all users' },
  { value: 'forwardOAuth', label: "Forward the user's OAuth token", description: "Grafana's OAuth identity; cache per user" },
  { value: 'hmac', label: 'HMAC signature', description: 'Each request signed with a shared secret' },
  { value: 'module', label: 'Auth module', description: 'Credentials from a loadable module' },
];

interface Props {
  options: Settings;
  onChange: (o: Settings) => void;
}

/** Picking a type also sets the flags Grafana itself reads: basicAuth and oauthPassThru. */
export function selectAuthType(o: Settings, t: AuthType): Settings {
  const next = patchJson(o, { authType: t, oauthPassThru: t === 'forwardOAuth' ? true : undefined });
  return { ...next, basicAuth: t === 'basic' };
}

/**
 * The key goes in a header (apiKeyHeader, default X-API-Key) or a query parameter
 * (apiKeyQueryParam, present even while empty so the choice sticks); never both.
 */
export function apiKeyPlacement(o: Settings, where: 'header' | 'query'): Settings {
  const jsonData = { ...o.jsonData };
  if (where === 'query') {
    delete jsonData.apiKeyHeader;
    jsonData.apiKeyQueryParam = jsonData.apiKeyQueryParam ?? '';
  } else {
    delete jsonData.apiKeyQueryParam;
  }
  return { ...o, jsonData };
}

export function AuthSection({ options, onChange }: Props) {
  const jd = options.jsonData;
  const type = effectiveAuthType(jd, options.basicAuth);
  const secret = (key: keyof CachingProxySecureData, label: string, extra?: { description?: string; multiline?: boolean }) => (
    <SecretField
      id={`cp-${key}`}
      label={label}
      description={extra?.description}
      multiline={extra?.multiline}
      configured={isConfigured(options, key)}
      value={pendingSecret(options, key)}
      onChange={(v) => onChange(setSecure(options, key, v))}
      onReset={() => onChange(resetSecure(options, key))}
    />
  );
  const apiKeyIn = jd.apiKeyQueryParam !== undefined ? 'query' : 'header';

  return (
    <>
      <Field label="Authentication" description="How the plugin authenticates towards the upstream">
        <Select<AuthType>
          inputId="cp-authType"
          width={48}
          options={AUTH_OPTIONS}
          value={type}
          onChange={(v) => onChange(selectAuthType(options, v.value ?? 'none'))}
        />
      </Field>
      <div data-testid="auth-fields">
        {type === 'basic' && (
          <>
            <TextField
              id="cp-basicAuthUser"
              label="User"
              required
              value={options.basicAuthUser}
              onChange={(v) => onChange({ ...options, basicAuthUser: v })}
            />
            {secret('basicAuthPassword', 'Password')}
          </>
        )}
        {type === 'bearer' && secret('bearerToken', 'Bearer token', { description: 'Sent as Authorization: Bearer <token>' })}
        {type === 'apiKey' && (
          <>
            <ChoiceField<'header' | 'query'>
              id="cp-apiKeyIn"
              label="Send the key in"
              value={apiKeyIn}
              options={[
                { value: 'header', label: 'Header' },
                { value: 'query', label: 'Query parameter' },
              ]}
              onChange={(v) => onChange(apiKeyPlacement(options, v))}
            />
            {apiKeyIn === 'header' ? (
              <TextField
                id="cp-apiKeyHeader"
                label="Header name"
                placeholder={DEFAULTS.apiKeyHeader}
                description={`Default: ${DEFAULTS.apiKeyHeader}.`}
                value={jd.apiKeyHeader}
                invalid={jd.apiKeyHeader !== undefined && normalizeToken(jd.apiKeyHeader) === undefined}
                error="Not a valid header name"
                onChange={(v) => onChange(setJson(options, 'apiKeyHeader', v))}
              />
            ) : (
              <TextField
                id="cp-apiKeyQueryParam"
                label="Query parameter name"
                required
                placeholder="api_key"
                value={jd.apiKeyQueryParam}
                onChange={(v) => onChange({ ...options, jsonData: { ...jd, apiKeyQueryParam: v } })}
              />
            )}
            {secret('apiKey', 'API key')}
          </>
        )}
        {type === 'oauth2' && (
          <>
            <TextField
              id="cp-oauth2TokenUrl"
              label="Token URL"
              required
              placeholder="https://sso.example.com/oauth/token"
              value={jd.oauth2TokenUrl}
              onChange={(v) => onChange(setJson(options, 'oauth2TokenUrl', v))}
            />
            <TextField
              id="cp-oauth2ClientId"
              label="Client ID"
              required
              value={jd.oauth2ClientId}
              onChange={(v) => onChange(setJson(options, 'oauth2ClientId', v))}
            />
            {secret('oauth2ClientSecret', 'Client secret')}
            <ListField
              id="cp-oauth2Scopes"
              label="Scopes"
              value={jd.oauth2Scopes}
              onChange={(v) => onChange(setJson(options, 'oauth2Scopes', v))}
            />
            <TextField
              id="cp-oauth2Audience"
              label="Audience"
              value={jd.oauth2Audience}
              onChange={(v) => onChange(setJson(options, 'oauth2Audience', v))}
            />
          </>
        )}
        {type === 'forwardOAuth' && (
          <Alert severity="info" title="The user's own OAuth token goes upstream">
            Grafana forwards the signed-in user&apos;s token (Forward OAuth identity is switched on with this type), and
            the cache is kept per user.
          </Alert>
        )}
        {type === 'hmac' && (
          <>
            <TextField
              id="cp-hmacHeader"
              label="Signature header"
              placeholder={DEFAULTS.hmacHeader}
              description={`Default: ${DEFAULTS.hmacHeader}. The timestamp goes in X-Timestamp.`}
              value={jd.hmacHeader}
              onChange={(v) => onChange(setJson(options, 'hmacHeader', v))}
            />
            <Field label="Algorithm" description={`Default: ${DEFAULTS.hmacAlgorithm}.`}>
              <RadioButtonGroup<HmacAlgorithm>
                id="cp-hmacAlgorithm"
                options={HMAC_ALGORITHMS.map((a) => ({ value: a, label: a }))}
                value={jd.hmacAlgorithm ?? DEFAULTS.hmacAlgorithm}
                onChange={(v) => onChange(setJson(options, 'hmacAlgorithm', v))}
              />
            </Field>
            {secret('hmacSecret', 'HMAC secret')}
          </>
        )}
        {type === 'module' && <ModuleFields options={options} onChange={onChange} required />}
      </div>
    </>
  );
}
