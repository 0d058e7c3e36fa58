/* Shared test helpers: a settings object as Grafana passes it, and a stateful editor host. */
import React, { useState } from 'react';
import { render } from '@testing-library/react';

import { ConfigEditor } from '../components/ConfigEditor';
import { Settings } from '../components/options';
import { CachingProxyOptions } from '../types';

export function makeSettings(over: Partial<Settings> = {}, jsonData: CachingProxyOptions = {}): Settings {
  return {
    id: 7,
    uid: '',
    orgId: 1,
    name: 'Caching proxy',
    type: 'seed-cachingproxy-datasource',
    typeName: 'Caching proxy',
    typeLogoUrl: '',
    access: 'proxy',
    url: 'https://api.example.com/v2',
    user: '',
    database: '',
    basicAuth: false,
    basicAuthUser: '',
    isDefault: false,
    readOnly: false,
    withCredentials: false,
    secureJsonFields: {},
    ...over,
    jsonData: { ...jsonData, ...(over.jsonData ?? {}) },
  } as Settings;
}

/** Renders the config editor as Grafana does: each change comes back as the new props. */
export function renderConfig(initial: Settings, orgRole?: string) {
  const state = { latest: initial, changes: 0 };
  function Host() {
    const [o, setO] = useState(initial);
    return (
      <ConfigEditor
        options={o}
        orgRole={orgRole}
        onOptionsChange={(n) => {
          state.latest = n as Settings;
          state.changes++;
          setO(n as Settings);
        }}
      />
    );
  }
  const utils = render(<Host />);
  return { ...utils, state };
}

/** The labels of the fields inside an element (not those of radio options). */
export function fieldLabels(el: HTMLElement): string[] {
  return Array.from(el.querySelectorAll('label[for^="cp-"]')).map((l) =>
    (l.firstElementChild?.textContent ?? l.textContent ?? '').replace(/\s*\*\s*$/, '').trim()
  );
}
