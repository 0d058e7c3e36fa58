/*
 * datasource.ts - the data source class Grafana instantiates: queries go to the backend
 * (QueryData through /api/ds/query), after dashboard variables are substituted. The plugin's own
 * time placeholders are left for the backend, which aligns the range to the cache step first.
 */
import { CoreApp, DataSourceInstanceSettings, ScopedVars } from '@grafana/data';
import { DataSourceWithBackend, getTemplateSrv } from '@grafana/runtime';

import { CachingProxyOptions, CachingProxyQuery, DEFAULT_QUERY } from './types';

/** The backend's placeholders: ${__from}, ${__to:s}, ${__interval_ms}, $__from, ... */
const BACKEND_PLACEHOLDER = /\$\{__(?:from|to)(?::s|:iso)?\}|\$\{__(?:interval_ms|maxDataPoints)\}|\$__(?:from|to|interval_ms|maxDataPoints)(?![A-Za-z0-9_])/g;

/**
 * Substitutes dashboard variables in text but keeps the backend's placeholders as they are.
 * Exported for tests; `replace` is Grafana's template service.
 */
export function interpolate(text: string, replace: (t: string) => string): string {
  const kept: string[] = [];
  const masked = text.replace(BACKEND_PLACEHOLDER, (m) => {
    kept.push(m);
    return `\u0000${kept.length - 1}\u0000`;
  });
  return replace(masked).replace(/\u0000(\d+)\u0000/g, (_, i) => kept[Number(i)]);
}

export class CachingProxyDataSource extends DataSourceWithBackend<CachingProxyQuery, CachingProxyOptions> {
  constructor(instanceSettings: DataSourceInstanceSettings<CachingProxyOptions>) {
    super(instanceSettings);
  }

  getDefaultQuery(_: CoreApp): Partial<CachingProxyQuery> {
    return DEFAULT_QUERY;
  }

  filterQuery(query: CachingProxyQuery): boolean {
    return !query.hide;
  }

  applyTemplateVariables(query: CachingProxyQuery, scopedVars: ScopedVars): CachingProxyQuery {
    const srv = getTemplateSrv();
    const r = (t: string) => interpolate(t, (x) => srv.replace(x, scopedVars));
    const map = <T,>(obj: Record<string, T> | undefined, f: (v: T) => T) =>
      obj && Object.fromEntries(Object.entries(obj).map(([k, v]) => [k, f(v)]));
    const one = (v: unknown) => (typeof v === 'string' ? r(v) : v);
    return {
      ...query,
      path: query.path && r(query.path),
      body: query.body && r(query.body),
      root: query.root && r(query.root),
      params: map(query.params, (v) => (Array.isArray(v) ? v.map(one) : one(v)) as never),
      headers: map(query.headers, r),
    };
  }
}
