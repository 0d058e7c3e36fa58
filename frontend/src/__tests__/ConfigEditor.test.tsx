import React from 'react';
import { act, render, screen, waitFor, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { BackendSrv, setBackendSrv } from '@grafana/runtime';

import { ConfigEditor } from '../components/ConfigEditor';
import { AuthType, SECURE_KEYS } from '../types';
import { fieldLabels, makeSettings, renderConfig } from './helpers';

const AUTH_LABELS: Record<string, string[]> = {
  none: [],
  basic: ['User', 'Password'],
  bearer: ['Bearer token'],
  apiKey: ['Send the key in', 'Header name', 'API key'],
  oauth2: ['Token URL', 'Client ID', 'Client secret', 'Scopes', 'Audience'],
  forwardOAuth: [],
  hmac: ['Signature header', 'Algorithm', 'HMAC secret'],
  module: ['Auth module', 'Module configuration', 'Module secrets'],
};

async function pickAuthType(user: ReturnType<typeof userEvent.setup>, label: string) {
  await user.click(screen.getByLabelText(/^Authentication/));
  await user.click(await screen.findByText(label));
}

describe('config editor', () => {
  it('renders every section with the defaults as placeholders', () => {
    renderConfig(makeSettings());
    for (const title of ['Connection', 'Authentication', 'Custom headers', 'TLS', 'Access', 'Authorization', 'Cache']) {
      expect(screen.getByText(title, { selector: 'legend' })).toBeInTheDocument();
    }
    expect(screen.getByLabelText(/^URL/)).toHaveValue('https://api.example.com/v2');
    expect(screen.getByLabelText(/^Timeout/)).toHaveAttribute('placeholder', '30');
    expect(screen.getByLabelText(/^Health path/)).toHaveAttribute('placeholder', '/');
    expect(screen.getByLabelText(/^Max response size/)).toHaveAttribute('placeholder', '64MiB');
    expect(screen.getByLabelText(/^Max request body/)).toHaveAttribute('placeholder', '16MiB');
    expect(screen.getByLabelText(/^Authorization cache TTL/)).toHaveAttribute('placeholder', '10s');
    const cache = screen.getByTestId('cache-settings');
    const placeholders: Record<string, string> = {
      'Resource TTL': '30s',
      'Query TTL': '60s',
      'Stale while revalidate': '0s',
      'Stale if error': '0s',
      'Not-found TTL': '0s',
      'Time alignment': '10s',
      'Max entry size': '8MiB',
      'Memory budget': '256MiB',
    };
    for (const [label, ph] of Object.entries(placeholders)) {
      const input = within(cache).getByLabelText(new RegExp(`^${label}`));
      expect(input).toHaveAttribute('placeholder', ph);
      expect(document.querySelector(`label[for="${input.id}"]`)?.textContent).toContain(`Default: ${ph}.`);
    }
    expect(within(cache).getByText(/Default: GET, HEAD\./)).toBeInTheDocument();
    expect(within(cache).getByLabelText(/^Respect Cache-Control/)).toBeChecked();
    expect(within(cache).getByLabelText('Memory')).toBeChecked();
    expect(within(cache).getByLabelText('Shared')).toBeChecked();
    // the cache panel needs a saved data source
    expect(screen.queryByTestId('cache-panel')).not.toBeInTheDocument();
  });

  it.each(Object.entries(AUTH_LABELS))('auth type %s shows exactly its fields', (type, labels) => {
    renderConfig(makeSettings({}, { authType: type as AuthType }));
    expect(fieldLabels(screen.getByTestId('auth-fields'))).toEqual(labels);
  });

  it('apiKey in a query parameter swaps the header field for the parameter name', async () => {
    const user = userEvent.setup({ delay: null });
    const { state } = renderConfig(makeSettings({}, { authType: 'apiKey', apiKeyHeader: 'X-Key' }));
    await user.click(screen.getByLabelText('Query parameter'));
    expect(fieldLabels(screen.getByTestId('auth-fields'))).toEqual(['Send the key in', 'Query parameter name', 'API key']);
    expect(state.latest.jsonData.apiKeyHeader).toBeUndefined();
    expect(state.latest.jsonData.apiKeyQueryParam).toBe('');
    await user.type(screen.getByLabelText(/^Query parameter name/), 'token');
    await user.type(screen.getByLabelText(/^API key/), 'k-123');
    expect(state.latest.jsonData).toMatchObject({ authType: 'apiKey', apiKeyQueryParam: 'token' });
    expect(state.latest.secureJsonData).toEqual({ apiKey: 'k-123' });
    await user.click(screen.getByLabelText('Header'));
    expect(state.latest.jsonData.apiKeyQueryParam).toBeUndefined();
    expect(screen.getByLabelText(/^Header name/)).toHaveAttribute('placeholder', 'X-API-Key');
  });

  it('picking an auth type sets basicAuth and oauthPassThru as Grafana expects', async () => {
    const user = userEvent.setup({ delay: null });
    const { state } = renderConfig(makeSettings());
    await pickAuthType(user, 'Basic auth');
    expect(state.latest.basicAuth).toBe(true);
    expect(state.latest.jsonData.authType).toBe('basic');
    const auth = screen.getByTestId('auth-fields');
    await user.type(within(auth).getByLabelText(/^User/), 'svc');
    await user.type(within(auth).getByLabelText(/^Password/), 'pw');
    expect(state.latest.basicAuthUser).toBe('svc');
    expect(state.latest.secureJsonData?.basicAuthPassword).toBe('pw');

    await pickAuthType(user, "Forward the user's OAuth token");
    expect(state.latest.jsonData).toMatchObject({ authType: 'forwardOAuth', oauthPassThru: true });
    expect(state.latest.basicAuth).toBe(false);
    // the cache scope is forced to user
    const scope = within(screen.getByTestId('cache-settings')).getByLabelText('User');
    expect(scope).toBeChecked();
    expect(scope).toBeDisabled();

    await pickAuthType(user, 'Bearer token');
    expect(state.latest.jsonData.oauthPassThru).toBeUndefined();
    await user.type(screen.getByLabelText(/^Bearer token/), 'tok');
    expect(state.latest.secureJsonData?.bearerToken).toBe('tok');
  });

  it('oauth2, hmac and module values round-trip to jsonData and secureJsonData', async () => {
    const user = userEvent.setup({ delay: null });
    const first = renderConfig(makeSettings({}, { authType: 'oauth2' }));
    await user.type(screen.getByLabelText(/^Token URL/), 'https://sso/token');
    await user.type(screen.getByLabelText(/^Client ID/), 'grafana');
    await user.type(screen.getByLabelText(/^Client secret/), 'cs');
    await user.type(screen.getByLabelText(/^Scopes/), 'read{Enter}write{Enter}');
    await user.type(screen.getByLabelText(/^Audience/), 'api');
    expect(first.state.latest.jsonData).toEqual({
      authType: 'oauth2',
      oauth2TokenUrl: 'https://sso/token',
      oauth2ClientId: 'grafana',
      oauth2Scopes: ['read', 'write'],
      oauth2Audience: 'api',
    });
    expect(first.state.latest.secureJsonData).toEqual({ oauth2ClientSecret: 'cs' });
    first.unmount();

    // what was produced renders back (secrets as Grafana returns them: flags only)
    renderConfig({ ...first.state.latest, secureJsonData: undefined, secureJsonFields: { oauth2ClientSecret: true } });
    expect(screen.getByLabelText(/^Token URL/)).toHaveValue('https://sso/token');
    expect(screen.getByLabelText(/^Client secret/)).toHaveValue('configured');
    expect(screen.getByText('read')).toBeInTheDocument();
    cleanupAll();

    const hmac = renderConfig(makeSettings({}, { authType: 'hmac' }));
    await user.click(screen.getByLabelText('sha512'));
    await user.type(screen.getByLabelText(/^Signature header/), 'X-Sig');
    await user.type(screen.getByLabelText(/^HMAC secret/), 'hs');
    expect(hmac.state.latest.jsonData).toEqual({ authType: 'hmac', hmacAlgorithm: 'sha512', hmacHeader: 'X-Sig' });
    expect(hmac.state.latest.secureJsonData).toEqual({ hmacSecret: 'hs' });
    hmac.unmount();

    const mod = renderConfig(makeSettings({}, { authType: 'module' }));
    await user.type(screen.getByLabelText(/^Auth module/), 'example');
    await user.type(screen.getByLabelText(/^Module configuration/), '{{"tenant": "a"}');
    expect(mod.state.latest.jsonData).toEqual({ authType: 'module', authModule: 'example', authModuleConfig: { tenant: 'a' } });
    await user.type(screen.getByLabelText(/^Module configuration/), 'x');
    expect(screen.getByText('Not a JSON object')).toBeInTheDocument();
    expect(mod.state.latest.jsonData.authModuleConfig).toBe('{"tenant": "a"}x');
  });

  it('never reads a secret back: configured secrets show as configured and reset clears them', async () => {
    const user = userEvent.setup({ delay: null });
    const secret = 'S3CRET-value-never-shown';
    const fields: Record<string, boolean> = {};
    const data: Record<string, string> = {};
    for (const k of [...SECURE_KEYS, 'httpHeaderValue1']) {
      fields[k] = true;
      // even if a stored value were handed to the editor, it must not reach the page
      data[k] = `${secret}-${k}`;
    }
    const settings = makeSettings(
      { basicAuth: true, basicAuthUser: 'u', secureJsonFields: fields, secureJsonData: data },
      { authType: 'basic', httpHeaderName1: 'X-Tenant', tlsAuth: true, tlsAuthWithCACert: true, cache: { backend: 'redis' } }
    );
    const { container, state } = renderConfig(settings);
    const html = () => container.innerHTML;
    expect(html()).not.toContain(secret);
    const inputs = Array.from(container.querySelectorAll('input, textarea')) as HTMLInputElement[];
    expect(inputs.some((i) => i.value.includes(secret))).toBe(false);
    // basic password, header value, CA, client cert, client key, redis password, module secrets
    expect(inputs.filter((i) => i.value === 'configured').length).toBe(7);

    const password = screen.getByLabelText(/^Password/);
    expect(password).toBeDisabled();
    await user.click(within(password.closest('[data-testid="input-wrapper"]')!.parentElement!).getByRole('button', { name: 'Reset' }));
    expect(state.latest.secureJsonFields.basicAuthPassword).toBe(false);
    expect(state.latest.secureJsonData?.basicAuthPassword).toBe('');
    expect(screen.getByLabelText(/^Password/)).toBeEnabled();
    expect(screen.getByLabelText(/^Password/)).toHaveValue('');
    expect(html()).not.toContain(secret);
  });

  it('custom headers: add, edit, and remove with renumbering', async () => {
    const user = userEvent.setup({ delay: null });
    const { state } = renderConfig(
      makeSettings(
        { secureJsonFields: { httpHeaderValue1: true, httpHeaderValue2: true, httpHeaderValue3: true } },
        { httpHeaderName1: 'X-A', httpHeaderName2: 'X-B', httpHeaderName3: 'X-C' }
      )
    );
    await user.click(screen.getByRole('button', { name: 'Add header' }));
    await user.type(screen.getByLabelText('Header 4 name'), 'X-D');
    await user.type(screen.getByLabelText('Header 4 value'), 'd');
    expect(state.latest.jsonData.httpHeaderName4).toBe('X-D');
    expect(state.latest.secureJsonData?.httpHeaderValue4).toBe('d');

    await user.click(screen.getByRole('button', { name: 'Remove header 2' }));
    const jd = state.latest.jsonData;
    expect([jd.httpHeaderName1, jd.httpHeaderName2, jd.httpHeaderName3, jd.httpHeaderName4]).toEqual(['X-A', 'X-C', 'X-D', undefined]);
    // X-A keeps its stored value; X-C moved from slot 3 to 2, so its value must be entered again
    expect(state.latest.secureJsonFields).toMatchObject({ httpHeaderValue1: true, httpHeaderValue2: false, httpHeaderValue3: false });
    expect(state.latest.secureJsonData).toMatchObject({ httpHeaderValue2: '', httpHeaderValue3: 'd' });
    expect(screen.getByLabelText('Header 1 value')).toHaveValue('configured');
    expect(screen.getByLabelText('Header 2 value')).toHaveValue('');
    expect(screen.getByLabelText('Header 3 value')).toHaveValue('d');
  });

  it('TLS switches show their certificate fields and store them as secrets', async () => {
    const user = userEvent.setup({ delay: null });
    const { state } = renderConfig(makeSettings());
    expect(screen.queryByLabelText(/^CA certificate/)).not.toBeInTheDocument();
    await user.click(screen.getByLabelText(/^Skip TLS certificate verification/));
    await user.click(screen.getByLabelText(/^With CA certificate/));
    await user.click(screen.getByLabelText(/^TLS client authentication/));
    await user.type(screen.getByLabelText(/^CA certificate/), 'CA');
    await user.type(screen.getByLabelText(/^Client certificate/), 'CERT');
    await user.type(screen.getByLabelText(/^Client key/), 'KEY');
    expect(state.latest.jsonData).toMatchObject({ tlsSkipVerify: true, tlsAuthWithCACert: true, tlsAuth: true });
    expect(state.latest.secureJsonData).toEqual({ tlsCACert: 'CA', tlsClientCert: 'CERT', tlsClientKey: 'KEY' });
    await user.click(screen.getByLabelText(/^Skip TLS certificate verification/));
    expect(state.latest.jsonData.tlsSkipVerify).toBeUndefined();
  });

  it('Redis TLS and Sentinel settings appear with their URL schemes and store secrets', async () => {
    const user = userEvent.setup({ delay: null });
    const { state } = renderConfig(makeSettings({}, { cache: { backend: 'redis' } }));
    const cache = screen.getByTestId('cache-settings');
    expect(within(cache).queryByLabelText(/^Redis CA certificate/)).not.toBeInTheDocument();
    expect(within(cache).queryByLabelText(/^Sentinel password/)).not.toBeInTheDocument();
    const url = within(cache).getByLabelText(/^Redis URL/);
    await user.type(url, 'rediss://cache:6380');
    await user.click(within(cache).getByLabelText(/^Skip Redis TLS certificate verification/));
    await user.type(within(cache).getByLabelText(/^Redis CA certificate/), 'CA');
    await user.type(within(cache).getByLabelText(/^Redis client certificate/), 'CERT');
    await user.type(within(cache).getByLabelText(/^Redis client key/), 'KEY');
    expect(state.latest.jsonData.cache).toMatchObject({ redisUrl: 'rediss://cache:6380', redisTlsSkipVerify: true });
    expect(state.latest.secureJsonData).toEqual({ redisTlsCACert: 'CA', redisTlsClientCert: 'CERT', redisTlsClientKey: 'KEY' });
    await user.clear(url);
    await user.type(url, 'redis-sentinel://s1:26379,s2:26379/mymaster');
    expect(within(cache).queryByLabelText(/^Redis CA certificate/)).not.toBeInTheDocument();
    await user.type(within(cache).getByLabelText(/^Sentinel password/), 'sp');
    expect(state.latest.secureJsonData).toMatchObject({ redisSentinelPassword: 'sp' });
    await user.clear(url);
    await user.type(url, 'memcached://x');
    expect(within(cache).getByText(/^Must start with redis:\/\//)).toBeInTheDocument();
  });

  it('rules: add, edit, reorder and remove; empty lists are left out', async () => {
    const user = userEvent.setup({ delay: null });
    const { state } = renderConfig(makeSettings());
    const add = screen.getByRole('button', { name: 'Add rule' });
    await user.click(add);
    await user.click(add);
    await user.click(add);
    expect(state.latest.jsonData.rules).toEqual([{ effect: 'allow' }, { effect: 'allow' }, { effect: 'allow' }]);

    const r1 = screen.getByTestId('rule-1');
    await user.click(within(r1).getByLabelText('Viewer'));
    await user.type(within(r1).getByLabelText(/^Methods/), 'get{Enter}');
    await user.type(within(r1).getByLabelText(/^Paths/), 'invoices/**{Enter}');
    const r2 = screen.getByTestId('rule-2');
    await user.click(within(r2).getByLabelText('Deny'));
    await user.type(within(r2).getByLabelText(/^Users/), 'contractor@example.com{Enter}');
    await user.type(within(r2).getByLabelText(/^Orgs/), '2{Enter}x{Enter}');
    const r3 = screen.getByTestId('rule-3');
    await user.click(within(r3).getByLabelText('Admin'));
    expect(state.latest.jsonData.rules).toEqual([
      { effect: 'allow', roles: ['Viewer'], methods: ['GET'], paths: ['/invoices/**'] },
      { effect: 'deny', users: ['contractor@example.com'], orgs: [2] },
      { effect: 'allow', roles: ['Admin'] },
    ]);

    await user.click(screen.getByRole('button', { name: 'Move rule 3 up' }));
    await user.click(screen.getByRole('button', { name: 'Move rule 2 up' }));
    expect(state.latest.jsonData.rules?.map((r) => r.roles?.[0] ?? r.effect)).toEqual(['Admin', 'Viewer', 'deny']);
    await user.click(screen.getByRole('button', { name: 'Move rule 1 down' }));
    expect(state.latest.jsonData.rules?.map((r) => r.roles?.[0] ?? r.effect)).toEqual(['Viewer', 'Admin', 'deny']);
    expect(screen.getByRole('button', { name: 'Move rule 1 up' })).toBeDisabled();
    expect(screen.getByRole('button', { name: 'Move rule 3 down' })).toBeDisabled();

    // unticking the only role drops the list (an empty list would match nobody)
    await user.click(within(screen.getByTestId('rule-1')).getByLabelText('Viewer'));
    expect(state.latest.jsonData.rules?.[0]).toEqual({ effect: 'allow', methods: ['GET'], paths: ['/invoices/**'] });

    await user.click(screen.getByRole('button', { name: 'Remove rule 2' }));
    expect(state.latest.jsonData.rules).toEqual([
      { effect: 'allow', methods: ['GET'], paths: ['/invoices/**'] },
      { effect: 'deny', users: ['contractor@example.com'], orgs: [2] },
    ]);
    await user.click(screen.getByRole('button', { name: 'Remove rule 1' }));
    await user.click(screen.getByRole('button', { name: 'Remove rule 1' }));
    expect(state.latest.jsonData.rules).toBeUndefined();

    await user.click(screen.getByLabelText('Deny', { selector: '#option-deny-cp-defaultAction' }));
    expect(state.latest.jsonData.defaultAction).toBe('deny');
  });

  it('access, authorization service and cache settings land in jsonData', async () => {
    const user = userEvent.setup({ delay: null });
    const { state } = renderConfig(makeSettings());
    await user.type(screen.getByLabelText(/^Allowed paths/), 'api/**{Enter}');
    await user.type(screen.getByLabelText(/^Forwarded client headers/), 'Accept{Enter}bad header{Enter}');
    await user.type(screen.getByLabelText(/^Max response size/), '1MiB');
    await user.type(screen.getByLabelText(/^Max request body/), '1024');
    await user.type(screen.getByLabelText(/^External authorization URL/), 'http://authz');
    await user.type(screen.getByLabelText(/^Authorization cache TTL/), '1m');
    await user.clear(screen.getByLabelText(/^Timeout/));
    await user.type(screen.getByLabelText(/^Timeout/), '15');
    expect(screen.getByLabelText(/^Max connections/)).toHaveAttribute('placeholder', '1024');
    await user.type(screen.getByLabelText(/^Max connections/), '64');
    const cache = screen.getByTestId('cache-settings');
    await user.type(within(cache).getByLabelText(/^Resource TTL/), '2m');
    await user.type(within(cache).getByLabelText(/^Query TTL/), '300');
    await user.type(within(cache).getByLabelText(/^Cacheable methods/), 'post{Enter}');
    await user.click(within(cache).getByLabelText(/^Respect Cache-Control/));
    await user.click(within(cache).getByLabelText(/^Revalidate/));
    await user.click(within(cache).getByLabelText('Org'));
    await user.click(within(cache).getByRole('button', { name: 'Add lifetime' }));
    await user.type(within(cache).getByLabelText(/^Paths of lifetime 1/), '/live/**{Enter}');
    await user.clear(within(cache).getByLabelText('TTL'));
    await user.type(within(cache).getByLabelText('TTL'), '0');
    expect(state.latest.jsonData).toEqual({
      timeout: 15,
      maxConnections: 64,
      allowedPaths: ['/api/**'],
      forwardHeaders: ['Accept'],
      maxResponseBytes: '1MiB',
      maxRequestBytes: 1024,
      authzUrl: 'http://authz',
      authzCacheTtl: '1m',
      cache: {
        resourceTtl: '2m',
        queryTtl: 300,
        methods: ['POST'],
        respectCacheControl: false,
        revalidate: false,
        scope: 'org',
        rules: [{ paths: ['/live/**'], ttl: 0 }],
      },
    });

    // Redis shows its own settings, off hides the rest
    await user.click(within(cache).getByLabelText('Redis'));
    expect(within(cache).getByLabelText(/^Redis URL/)).toHaveAttribute('placeholder', 'redis://127.0.0.1:6379');
    expect(within(cache).getByLabelText(/^Key prefix/)).toHaveAttribute('placeholder', 'cachingproxy:');
    expect(within(cache).getByLabelText(/^Near cache TTL/)).toHaveAttribute('placeholder', '0s');
    expect(within(cache).queryByLabelText(/^Memory budget/)).not.toBeInTheDocument();
    await user.type(within(cache).getByLabelText(/^Redis URL/), 'redis://cache:6379/1');
    await user.type(within(cache).getByLabelText(/^Redis password/), 'rp');
    expect(state.latest.jsonData.cache).toMatchObject({ backend: 'redis', redisUrl: 'redis://cache:6379/1' });
    expect(state.latest.secureJsonData).toEqual({ redisPassword: 'rp' });
    await user.click(within(cache).getByLabelText('Off'));
    expect(within(cache).queryByLabelText(/^Resource TTL/)).not.toBeInTheDocument();
    expect(state.latest.jsonData.cache?.backend).toBe('off');
  });
});

function cleanupAll() {
  document.body.innerHTML = '';
}

describe('cache panel', () => {
  const stats = {
    backend: 'memory',
    entries: 12,
    bytes: 3 * 1024 * 1024,
    hits: 90,
    misses: 10,
    stale: 1,
    revalidated: 4,
    bypass: 2,
    coalesced: 3,
    hitRatio: 0.9,
    upstreamRequests: 14,
    errors: 0,
  };
  let calls: Array<{ method: string; url: string; body?: unknown }>;

  beforeEach(() => {
    calls = [];
    setBackendSrv({
      get: async (url: string) => {
        calls.push({ method: 'GET', url });
        return stats;
      },
      post: async (url: string, body: unknown) => {
        calls.push({ method: 'POST', url, body });
        return { purged: 4 };
      },
    } as unknown as BackendSrv);
  });

  it('shows the figures of cache/stats of the saved data source', async () => {
    renderConfig(makeSettings({ uid: 'billing' }), 'Viewer');
    expect(await screen.findByText('90.0 %')).toBeInTheDocument();
    expect(calls).toEqual([{ method: 'GET', url: '/api/datasources/uid/billing/resources/cache/stats' }]);
    expect(screen.getByTestId('cache-stat-entries')).toHaveTextContent('12Entries');
    expect(screen.getByTestId('cache-stat-bytes')).toHaveTextContent('3.0 MiB');
    expect(screen.getByTestId('cache-backend')).toHaveTextContent('memory');
  });

  it.each(['Viewer', 'Editor'])('has no purge button for %s', async (role) => {
    renderConfig(makeSettings({ uid: 'billing' }), role);
    await screen.findByText('90.0 %');
    expect(screen.queryByRole('button', { name: /Purge/ })).not.toBeInTheDocument();
    expect(screen.getByText('Purging the cache needs the Admin role.')).toBeInTheDocument();
  });

  it('lets an Admin purge everything or a path prefix', async () => {
    const user = userEvent.setup({ delay: null });
    renderConfig(makeSettings({ uid: 'billing' }), 'Admin');
    await screen.findByText('90.0 %');
    await user.click(screen.getByRole('button', { name: 'Purge cache' }));
    expect(await screen.findByText('Purged 4 entries.')).toBeInTheDocument();
    await user.type(screen.getByLabelText(/^Path prefix/), 'api/x');
    await user.click(screen.getByRole('button', { name: 'Purge prefix' }));
    expect(await screen.findByText('Purged 4 entries under api/x.')).toBeInTheDocument();
    const posts = calls.filter((c) => c.method === 'POST');
    expect(posts).toEqual([
      { method: 'POST', url: '/api/datasources/uid/billing/resources/cache/purge', body: {} },
      { method: 'POST', url: '/api/datasources/uid/billing/resources/cache/purge', body: { prefix: '/api/x' } },
    ]);
    // stats are read again after each purge
    await waitFor(() => expect(calls.filter((c) => c.method === 'GET').length).toBe(3));
  });

  it('reports a failed stats call', async () => {
    setBackendSrv({
      get: async () => Promise.reject({ status: 403, data: { error: 'denied by a rule', status: 403 } }),
    } as unknown as BackendSrv);
    await act(async () => {
      render(<ConfigEditor options={makeSettings({ uid: 'x' })} onOptionsChange={() => {}} orgRole="Admin" />);
    });
    expect(await screen.findByText('denied by a rule')).toBeInTheDocument();
  });
});
