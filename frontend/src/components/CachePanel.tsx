/*
 * CachePanel.tsx - the saved data source's cache figures (GET cache/stats) and, for org Admins,
 * a purge of everything or of a path prefix (POST cache/purge; the plugin checks the role too).
 */
import React, { useCallback, useEffect, useState } from 'react';
import { css } from '@emotion/css';

import { GrafanaTheme2 } from '@grafana/data';
import { config } from '@grafana/runtime';
import { Alert, Button, Field, Input, Stack, useStyles2 } from '@grafana/ui';

import { fetchCacheStats, purgeCache } from '../resources';
import { CacheStats } from '../types';

interface Props {
  uid: string;
  /** the signed-in user's org role; defaults to Grafana's boot data */
  orgRole?: string;
}

function errorText(e: unknown): string {
  const err = e as { data?: { error?: string; message?: string }; message?: string; status?: number };
  return err?.data?.error ?? err?.data?.message ?? err?.message ?? (err?.status ? `HTTP ${err.status}` : String(e));
}

export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${v} B` : `${v.toFixed(1)} ${units[u]}`;
}

const FIGURES: Array<{ key: keyof CacheStats; label: string; format?: (v: number) => string }> = [
  { key: 'entries', label: 'Entries' },
  { key: 'bytes', label: 'Size', format: formatBytes },
  { key: 'hitRatio', label: 'Hit ratio', format: (v) => `${(v * 100).toFixed(1)} %` },
  { key: 'hits', label: 'Hits' },
  { key: 'misses', label: 'Misses' },
  { key: 'stale', label: 'Stale' },
  { key: 'revalidated', label: 'Revalidated' },
  { key: 'bypass', label: 'Bypass' },
  { key: 'coalesced', label: 'Coalesced' },
  { key: 'upstreamRequests', label: 'Upstream requests' },
  { key: 'errors', label: 'Errors' },
];

const getStyles = (theme: GrafanaTheme2) => ({
  grid: css({
    display: 'grid',
    gridTemplateColumns: 'repeat(auto-fill, minmax(140px, 1fr))',
    gap: theme.spacing(1),
    marginBottom: theme.spacing(2),
    maxWidth: 760,
  }),
  figure: css({
    background: theme.colors.background.secondary,
    borderRadius: theme.shape.radius.default,
    padding: theme.spacing(1, 1.5),
  }),
  value: css({ fontSize: theme.typography.h4.fontSize, fontWeight: theme.typography.fontWeightMedium }),
  label: css({ color: theme.colors.text.secondary, fontSize: theme.typography.bodySmall.fontSize }),
});

export function CachePanel({ uid, orgRole }: Props) {
  const styles = useStyles2(getStyles);
  const isAdmin = (orgRole ?? config.bootData?.user?.orgRole) === 'Admin';
  const [stats, setStats] = useState<CacheStats>();
  const [error, setError] = useState<string>();
  const [prefix, setPrefix] = useState('');
  const [purged, setPurged] = useState<string>();
  const [busy, setBusy] = useState(false);

  const load = useCallback(() => {
    setError(undefined);
    return fetchCacheStats(uid).then(setStats, (e) => setError(errorText(e)));
  }, [uid]);

  useEffect(() => {
    load();
  }, [load]);

  const purge = () => {
    setBusy(true);
    setPurged(undefined);
    purgeCache(uid, prefix)
      .then(
        (r) => {
          setPurged(`Purged ${r.purged} ${r.purged === 1 ? 'entry' : 'entries'}${prefix.trim() ? ` under ${prefix.trim()}` : ''}.`);
          return load();
        },
        (e) => setError(errorText(e))
      )
      .finally(() => setBusy(false));
  };

  return (
    <div data-testid="cache-panel">
      {error && (
        <Alert severity="error" title="Cache request failed">
          {error}
        </Alert>
      )}
      {stats && (
        <>
          <div className={styles.label}>
            Backend: <strong data-testid="cache-backend">{stats.backend}</strong>
          </div>
          <div className={styles.grid}>
            {FIGURES.map((f) => {
              const v = Number(stats[f.key] ?? 0);
              return (
                <div className={styles.figure} key={f.key} data-testid={`cache-stat-${f.key}`}>
                  <div className={styles.value}>{f.format ? f.format(v) : v.toLocaleString('en-US')}</div>
                  <div className={styles.label}>{f.label}</div>
                </div>
              );
            })}
          </div>
        </>
      )}
      <Stack direction="row" alignItems="flex-end" gap={1}>
        {isAdmin && (
          <>
            <Field label="Path prefix" description="Empty: purge everything of this data source">
              <Input id="cp-purge-prefix" width={30} placeholder="/api/x" value={prefix} onChange={(e) => setPrefix(e.currentTarget.value)} />
            </Field>
            <Field label="">
              <Button variant="destructive" icon="trash-alt" disabled={busy} onClick={purge}>
                {prefix.trim() ? 'Purge prefix' : 'Purge cache'}
              </Button>
            </Field>
          </>
        )}
        <Field label="">
          <Button variant="secondary" icon="sync" onClick={() => load()}>
            Refresh
          </Button>
        </Field>
      </Stack>
      {!isAdmin && <div className={styles.label}>Purging the cache needs the Admin role.</div>}
      {purged && (
        <Alert severity="success" title={purged} data-testid="purge-result" />
      )}
    </div>
  );
}
