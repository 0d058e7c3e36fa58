/*
 * The editors on a page of their own, for the headless-browser test: each scenario (?scenario=)
 * mounts the config editor or the query editor with the props Grafana would give, a theme, and
 * a stand-in backend for the cache panel. window.cpHarness exposes the latest change.
 */
import React, { useState } from 'react';
import { createRoot } from 'react-dom/client';

import { DataSourceSettings, ThemeContext, createTheme } from '@grafana/data';
import { BackendSrv, setBackendSrv } from '@grafana/runtime';
import { GlobalStyles } from '@grafana/ui';

import { ConfigEditor } from '../src/components/ConfigEditor';
import { QueryEditor } from '../src/components/QueryEditor';
import type { CachingProxyDataSource } from '../src/datasource';
import { AuthType, CachingProxyOptions, CachingProxyQuery, CachingProxySecureData } from '../src/types';

type Settings = DataSourceSettings<CachingProxyOptions, CachingProxySecureData>;

declare global {
  interface Window {
    cpHarness: { latest?: unknown; purges: unknown[] };
  }
}
window.cpHarness = { purges: [] };

setBackendSrv({
  get: async () => ({
    backend: 'memory',
    entries: 1284,
    bytes: 37_748_736,
    hits: 95_210,
    misses: 4_871,
    stale: 133,
    bypass: 912,
    coalesced: 407,
    hitRatio: 0.9513,
    upstreamRequests: 5_004,
    errors: 3,
  }),
  post: async (_url: string, body: unknown) => {
    window.cpHarness.purges.push(body);
    return { purged: 1284 };
  },
} as unknown as BackendSrv);

const params = new URLSearchParams(window.location.search);
const scenario = params.get('scenario') ?? 'config';
const role = params.get('role') ?? 'Admin';

function settings(jsonData: CachingProxyOptions, over: Partial<Settings> = {}): Settings {
  return {
    id: 3,
    uid: 'billing',
    orgId: 1,
    name: 'Billing API',
    type: 'seed-cachingproxy-datasource',
    typeName: 'Caching proxy',
    typeLogoUrl: '',
    access: 'proxy',
    url: 'https://billing.internal/v2',
    user: '',
    database: '',
    basicAuth: false,
    basicAuthUser: '',
    isDefault: false,
    readOnly: false,
    withCredentials: false,
    secureJsonFields: {},
    jsonData,
    ...over,
  } as Settings;
}

function initialSettings(): Settings {
  if (scenario.startsWith('auth-')) {
    const authType = scenario.slice(5) as AuthType;
    return settings(
      { authType, oauthPassThru: authType === 'forwardOAuth' || undefined },
      { uid: '', basicAuth: authType === 'basic', basicAuthUser: authType === 'basic' ? 'svc-grafana' : '', secureJsonFields: { basicAuthPassword: true, bearerToken: true, apiKey: true, oauth2ClientSecret: true, hmacSecret: true } }
    );
  }
  if (scenario === 'config-redis') {
    return settings(
      { authType: 'apiKey', apiKeyQueryParam: 'api_key', cache: { backend: 'redis', redisUrl: 'redis://cache.internal:6379/2', nearCacheTtl: '1s', scope: 'org' } },
      { secureJsonFields: { apiKey: true, redisPassword: true } }
    );
  }
  return settings(
    {
      authType: 'oauth2',
      oauth2TokenUrl: 'https://sso.internal/oauth/token',
      oauth2ClientId: 'grafana',
      oauth2Scopes: ['billing.read'],
      timeout: 15,
      httpHeaderName1: 'X-Tenant',
      allowedPaths: ['/invoices/**', '/customers/*'],
      defaultAction: 'deny',
      rules: [
        { effect: 'allow', roles: ['Admin'] },
        { effect: 'allow', roles: ['Viewer'], methods: ['GET'], paths: ['/invoices/**'] },
        { effect: 'deny', users: ['contractor@example.com'] },
      ],
      cache: { backend: 'memory', resourceTtl: '2m', queryTtl: '5m', staleIfError: '10m', rules: [{ paths: ['/customers/*'], ttl: 0 }] },
    },
    { secureJsonFields: { oauth2ClientSecret: true, httpHeaderValue1: true } }
  );
}

function ConfigHost() {
  const [o, setO] = useState(initialSettings);
  return (
    <ConfigEditor
      options={o}
      orgRole={role}
      onOptionsChange={(n) => {
        window.cpHarness.latest = n;
        setO(n as Settings);
      }}
    />
  );
}

function QueryHost() {
  const [q, setQ] = useState<CachingProxyQuery>({
    refId: 'A',
    method: 'GET',
    path: '/invoices?from=${__from:iso}&to=${__to:iso}',
    params: { status: ['open', 'overdue'], limit: '500' },
    headers: { Accept: 'application/json' },
    root: 'data.items',
    columns: [
      { selector: 'issued', name: 'Time', type: 'time', timeFormat: 'rfc3339' },
      { selector: 'amount', name: 'Amount', type: 'number' },
      { selector: 'customer.name', name: 'Customer' },
    ],
    format: 'timeseries',
    cacheTtl: '5m',
  });
  return (
    <QueryEditor
      datasource={{} as CachingProxyDataSource}
      query={q}
      onChange={(n) => {
        window.cpHarness.latest = n;
        setQ(n);
      }}
      onRunQuery={() => {}}
    />
  );
}

const theme = createTheme({ colors: { mode: params.get('theme') === 'light' ? 'light' : 'dark' } });

createRoot(document.getElementById('root')!).render(
  <ThemeContext.Provider value={theme}>
    <GlobalStyles />
    <div style={{ padding: 24, maxWidth: 980 }} data-testid="harness-ready">
      {scenario === 'query' ? <QueryHost /> : <ConfigHost />}
    </div>
  </ThemeContext.Provider>
);
