/*
 * CacheSection.tsx - the jsonData cache object (SPEC section 6): backend and every setting, each
 * with its default as placeholder and in its description.
 */
import React from 'react';

import { Alert, Button, Field, IconButton, Input } from '@grafana/ui';

import { AmountField, ChoiceField, ListField, Row, SecretField, SwitchField, TextField, normalizeGlob, normalizeMethod } from './fields';
import { Settings, amountText, isConfigured, parseAmount, pendingSecret, resetSecure, setCache, setSecure } from './options';
import { CACHE_DEFAULTS, CacheBackend, CacheRule, CacheScope, CacheSettings, effectiveAuthType } from '../types';

/** redisUrl schemes the parser accepts */
const REDIS_URL = /^(rediss?(-sentinel|-cluster)?|unix):\/\//i;

interface Props {
  options: Settings;
  onChange: (o: Settings) => void;
}

function CacheRules({ rules, onChange }: { rules: CacheRule[]; onChange: (r: CacheRule[] | undefined) => void }) {
  const set = (next: CacheRule[]) => onChange(next.length ? next : undefined);
  return (
    <Field label="Per-path lifetimes" description="First match wins; ttl 0 never caches those paths.">
      <div data-testid="cache-rules">
        {rules.map((r, i) => (
          <Row key={i} alignTop>
            <ListField
              id={`cp-cache-rule-${i + 1}-paths`}
              label={`Paths of lifetime ${i + 1}`}
              placeholder="/reports/**"
              value={r.paths}
              normalize={normalizeGlob}
              onChange={(paths) => set(rules.map((x, j) => (j === i ? { ...x, paths: paths ?? [] } : x)))}
            />
            <Field label="TTL">
              <Input
                id={`cp-cache-rule-${i + 1}-ttl`}
                width={12}
                placeholder="5m"
                value={amountText(r.ttl)}
                onChange={(e) => set(rules.map((x, j) => (j === i ? { ...x, ttl: parseAmount(e.currentTarget.value) ?? '' } : x)))}
              />
            </Field>
            <IconButton name="trash-alt" aria-label={`Remove lifetime ${i + 1}`} onClick={() => set(rules.filter((_, j) => j !== i))} />
          </Row>
        ))}
        <Button variant="secondary" icon="plus" size="sm" onClick={() => set([...rules, { paths: [], ttl: '5m' }])}>
          Add lifetime
        </Button>
      </div>
    </Field>
  );
}

export function CacheSection({ options, onChange }: Props) {
  const c: CacheSettings = options.jsonData.cache ?? {};
  const backend = c.backend ?? CACHE_DEFAULTS.backend;
  const forwardOAuth = effectiveAuthType(options.jsonData, options.basicAuth) === 'forwardOAuth';
  const set = <K extends keyof CacheSettings>(k: K, v: CacheSettings[K] | undefined) => onChange(setCache(options, k, v));
  const secret = (key: 'redisSentinelPassword' | 'redisTlsCACert' | 'redisTlsClientCert' | 'redisTlsClientKey', label: string, pem?: string) => (
    <SecretField
      id={`cp-${key}`}
      label={label}
      multiline={pem !== undefined}
      placeholder={pem}
      configured={isConfigured(options, key)}
      value={pendingSecret(options, key)}
      onChange={(v) => onChange(setSecure(options, key, v))}
      onReset={() => onChange(resetSecure(options, key))}
    />
  );
  const amount = (k: 'resourceTtl' | 'queryTtl' | 'staleWhileRevalidate' | 'staleIfError' | 'timeAlign' | 'querySplit' | 'splitStableAfter' | 'querySplitTtl' | 'notFoundTtl' | 'nearCacheTtl' | 'maxEntryBytes' | 'memoryMaxBytes', label: string, description: string) => (
    <AmountField id={`cp-cache-${k}`} label={label} description={description} value={c[k]} defaultText={String(CACHE_DEFAULTS[k])} onChange={(v) => set(k, v)} />
  );

  return (
    <div data-testid="cache-settings">
      <ChoiceField<CacheBackend>
        id="cp-cache-backend"
        label="Cache backend"
        description="memory: per Grafana process; redis: shared by every replica and kept across restarts. Default: memory."
        value={backend}
        options={[
          { value: 'memory', label: 'Memory' },
          { value: 'redis', label: 'Redis' },
          { value: 'off', label: 'Off' },
        ]}
        onChange={(v) => set('backend', v)}
      />
      {backend === 'off' ? (
        <Alert severity="info" title="The cache is off">
          Every call goes to the upstream (answers say X-Cache: BYPASS).
        </Alert>
      ) : (
        <>
          {backend === 'redis' && (
            <>
              <TextField
                id="cp-cache-redisUrl"
                label="Redis URL"
                description={`redis://[user@]host:port[/db], rediss:// (TLS), redis-sentinel://host:port[,host:port...]/master[/db], redis-cluster://host:port[,host:port...] (rediss-sentinel://, rediss-cluster:// for TLS) or unix:///path. Default: the operator's redis_url, else ${CACHE_DEFAULTS.redisUrl}.`}
                placeholder={CACHE_DEFAULTS.redisUrl}
                value={c.redisUrl}
                invalid={c.redisUrl !== undefined && !REDIS_URL.test(c.redisUrl)}
                error="Must start with redis://, rediss://, redis-sentinel://, redis-cluster:// (rediss- for TLS) or unix://"
                onChange={(v) => set('redisUrl', v)}
              />
              <SecretField
                id="cp-redisPassword"
                label="Redis password"
                configured={isConfigured(options, 'redisPassword')}
                value={pendingSecret(options, 'redisPassword')}
                onChange={(v) => onChange(setSecure(options, 'redisPassword', v))}
                onReset={() => onChange(resetSecure(options, 'redisPassword'))}
              />
              {/^rediss?-sentinel:\/\//i.test(c.redisUrl ?? '') && secret('redisSentinelPassword', 'Sentinel password')}
              {/^rediss/i.test(c.redisUrl ?? '') && (
                <>
                  <SwitchField
                    id="cp-cache-redisTlsSkipVerify"
                    label="Skip Redis TLS certificate verification"
                    description="Neither the chain nor the host name is checked. Not for production."
                    value={Boolean(c.redisTlsSkipVerify)}
                    onChange={(v) => set('redisTlsSkipVerify', v || undefined)}
                  />
                  {secret('redisTlsCACert', 'Redis CA certificate', '-----BEGIN CERTIFICATE----- (default: the system CAs)')}
                  {secret('redisTlsClientCert', 'Redis client certificate', '-----BEGIN CERTIFICATE-----')}
                  {secret('redisTlsClientKey', 'Redis client key', '-----BEGIN PRIVATE KEY-----')}
                </>
              )}
              <TextField
                id="cp-cache-keyPrefix"
                label="Key prefix"
                description={`Default: ${CACHE_DEFAULTS.keyPrefix}.`}
                placeholder={CACHE_DEFAULTS.keyPrefix}
                value={c.keyPrefix}
                onChange={(v) => set('keyPrefix', v)}
              />
              {amount('nearCacheTtl', 'Near cache TTL', 'A short-lived memory tier in front of Redis; 0 is off.')}
            </>
          )}
          {amount('resourceTtl', 'Resource TTL', 'Lifetime of proxied answers.')}
          {amount('queryTtl', 'Query TTL', 'Lifetime of query frames; a query may ask for less.')}
          <CacheRules rules={c.rules ?? []} onChange={(r) => set('rules', r)} />
          <ListField
            id="cp-cache-methods"
            label="Cacheable methods"
            description={`Default: ${CACHE_DEFAULTS.methods.join(', ')}.`}
            placeholder={CACHE_DEFAULTS.methods.join(', ')}
            value={c.methods}
            normalize={normalizeMethod}
            onChange={(v) => set('methods', v)}
          />
          {amount('staleWhileRevalidate', 'Stale while revalidate', 'Serve an expired answer while one refresh runs.')}
          {amount('staleIfError', 'Stale if error', 'Serve an expired answer while the upstream fails.')}
          {amount('notFoundTtl', 'Not-found TTL', 'Cache 404 answers this long; 0 never.')}
          <SwitchField
            id="cp-cache-respectCacheControl"
            label="Respect Cache-Control"
            description="Honour the upstream's no-store, private, max-age and s-maxage. Default: on."
            value={c.respectCacheControl ?? CACHE_DEFAULTS.respectCacheControl}
            onChange={(v) => set('respectCacheControl', v === CACHE_DEFAULTS.respectCacheControl ? undefined : v)}
          />
          <SwitchField
            id="cp-cache-revalidate"
            label="Revalidate"
            description="Refresh expired answers that carry an ETag or Last-Modified with a conditional request; a 304 renews them without their body. Default: on."
            value={c.revalidate ?? CACHE_DEFAULTS.revalidate}
            onChange={(v) => set('revalidate', v === CACHE_DEFAULTS.revalidate ? undefined : v)}
          />
          <ChoiceField<CacheScope>
            id="cp-cache-scope"
            label="Scope"
            description={
              forwardOAuth
                ? 'Forced to user: answers fetched with a user\u2019s own token are never shared.'
                : 'Who shares an answer: everyone allowed, an org, or one user. Default: shared.'
            }
            disabled={forwardOAuth}
            value={forwardOAuth ? 'user' : (c.scope ?? CACHE_DEFAULTS.scope)}
            options={[
              { value: 'shared', label: 'Shared' },
              { value: 'org', label: 'Org' },
              { value: 'user', label: 'User' },
            ]}
            onChange={(v) => set('scope', v)}
          />
          {amount('timeAlign', 'Time alignment', 'Queries: the time range is rounded down to this step, so relative ranges meet in the cache.')}
          {amount('querySplit', 'Query split', 'Queries using the time range are cut into pieces of this length, each cached on its own, so a refreshing dashboard fetches only the newest piece. 0s: off; a query may set its own.')}
          {amount('splitStableAfter', 'Stable after', 'A piece that ended longer ago than this no longer changes.')}
          {amount('querySplitTtl', 'Stable piece TTL', 'Lifetime of stable pieces.')}
          {amount('maxEntryBytes', 'Max entry size', 'Larger answers are not cached.')}
          {backend === 'memory' && amount('memoryMaxBytes', 'Memory budget', 'Total size of this data source\u2019s memory cache.')}
        </>
      )}
    </div>
  );
}
