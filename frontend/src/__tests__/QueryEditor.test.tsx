import React, { useState } from 'react';
import { render, screen, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';

import { QueryEditor } from '../components/QueryEditor';
import type { CachingProxyDataSource } from '../datasource';
import { CachingProxyQuery, PLACEHOLDERS } from '../types';

function renderQuery(initial: CachingProxyQuery) {
  const state = { latest: initial, runs: 0 };
  function Host() {
    const [q, setQ] = useState(initial);
    return (
      <QueryEditor
        datasource={{} as CachingProxyDataSource}
        query={q}
        onChange={(n) => {
          state.latest = n;
          setQ(n);
        }}
        onRunQuery={() => state.runs++}
      />
    );
  }
  render(<Host />);
  return state;
}

describe('query editor', () => {
  it('renders the call, the frame recipe and the placeholder hint', () => {
    renderQuery({ refId: 'A' });
    expect(screen.getByLabelText(/^Path/)).toHaveAttribute('placeholder', '/items?since=${__from}');
    expect(screen.getByText('GET')).toBeInTheDocument();
    expect(screen.getByLabelText('Table')).toBeChecked();
    expect(screen.getByLabelText(/^Cache TTL/)).toHaveAttribute('placeholder', 'queryTtl');
    expect(screen.queryByLabelText(/^Body/)).not.toBeInTheDocument();
    const hint = screen.getByTestId('placeholders');
    const listed = Array.from(hint.querySelectorAll('span')).map((s) => s.textContent);
    expect(listed).toEqual([
      '${__from}',
      '${__to}',
      '${__from:s}',
      '${__to:s}',
      '${__from:iso}',
      '${__to:iso}',
      '${__interval_ms}',
      '${__maxDataPoints}',
    ]);
    expect(PLACEHOLDERS.length).toBe(8);
  });

  it('round-trips path, root, format and cache TTL, and runs on blur', async () => {
    const user = userEvent.setup({ delay: null });
    const state = renderQuery({ refId: 'A' });
    await user.type(screen.getByLabelText(/^Path/), '/items?since=${{__from}');
    await user.type(screen.getByLabelText(/^Root/), 'data.items');
    await user.type(screen.getByLabelText(/^Cache TTL/), '5m');
    await user.tab();
    await user.click(screen.getByLabelText('Time series'));
    expect(state.latest).toEqual({ refId: 'A', path: '/items?since=${__from}', root: 'data.items', cacheTtl: '5m', format: 'timeseries' });
    expect(state.runs).toBeGreaterThanOrEqual(3);
    await user.clear(screen.getByLabelText(/^Cache TTL/));
    await user.type(screen.getByLabelText(/^Cache TTL/), '120');
    expect(state.latest.cacheTtl).toBe(120);
    await user.clear(screen.getByLabelText(/^Cache TTL/));
    expect('cacheTtl' in state.latest).toBe(false);
  });

  it('split takes a duration, off, or nothing (the data source default)', async () => {
    const user = userEvent.setup({ delay: null });
    const state = renderQuery({ refId: 'A', path: '/series?from=${__from}&to=${__to}' });
    await user.type(screen.getByLabelText(/^Split/), '1h');
    expect(state.latest.split).toBe('1h');
    await user.clear(screen.getByLabelText(/^Split/));
    await user.type(screen.getByLabelText(/^Split/), 'off');
    expect(state.latest.split).toBe('off');
    await user.clear(screen.getByLabelText(/^Split/));
    expect('split' in state.latest).toBe(false);
  });

  it('live shows the poll interval and sets live and liveInterval', async () => {
    const user = userEvent.setup({ delay: null });
    const state = renderQuery({ refId: 'A', path: '/points?since=${__from}' });
    expect(screen.queryByLabelText(/^Poll every/)).toBeNull();
    await user.click(screen.getByLabelText(/^Live/));
    expect(state.latest.live).toBe(true);
    await user.type(screen.getByLabelText(/^Poll every/), '5s');
    expect(state.latest.liveInterval).toBe('5s');
    await user.click(screen.getByLabelText(/^Live/));
    expect('live' in state.latest && state.latest.live).toBeFalsy();
    expect(screen.queryByLabelText(/^Poll every/)).toBeNull();
  });

  it('a method with a body shows the body field', async () => {
    const user = userEvent.setup({ delay: null });
    const state = renderQuery({ refId: 'A' });
    await user.click(screen.getByLabelText(/^Method/));
    await user.click(await screen.findByText('POST'));
    expect(state.latest.method).toBe('POST');
    await user.type(screen.getByLabelText(/^Body/), '{{"from": "${{__from:iso}"}');
    expect(state.latest.body).toBe('{"from": "${__from:iso}"}');
  });

  it('params repeat a name as a list; headers keep one value', async () => {
    const user = userEvent.setup({ delay: null });
    const state = renderQuery({ refId: 'A', params: { tag: ['a', 'b'], limit: 10 } });
    expect(screen.getByLabelText('param 1 name')).toHaveValue('tag');
    expect(screen.getByLabelText('param 2 value')).toHaveValue('b');
    expect(screen.getByLabelText('param 3 value')).toHaveValue('10');
    await user.click(screen.getByRole('button', { name: 'Add param' }));
    await user.type(screen.getByLabelText('param 4 name'), 'tag');
    await user.type(screen.getByLabelText('param 4 value'), 'c');
    expect(state.latest.params).toEqual({ tag: ['a', 'b', 'c'], limit: '10' });
    await user.click(screen.getByRole('button', { name: 'Remove param 1' }));
    expect(state.latest.params).toEqual({ tag: ['b', 'c'], limit: '10' });

    await user.click(screen.getByRole('button', { name: 'Add header' }));
    await user.type(screen.getByLabelText('header 1 name'), 'Accept');
    await user.type(screen.getByLabelText('header 1 value'), 'application/json');
    expect(state.latest.headers).toEqual({ Accept: 'application/json' });
    await user.click(screen.getByRole('button', { name: 'Remove header 1' }));
    expect('headers' in state.latest).toBe(false);
  });

  it('columns: add, type, time format, remove', async () => {
    const user = userEvent.setup({ delay: null });
    const state = renderQuery({ refId: 'A' });
    await user.click(screen.getByRole('button', { name: 'Add column' }));
    await user.click(screen.getByRole('button', { name: 'Add column' }));
    await user.type(screen.getByLabelText('Column 1 selector'), 'ts');
    await user.type(screen.getByLabelText('Column 1 name'), 'Time');
    const c1 = screen.getByTestId('column-1');
    await user.click(within(c1).getByLabelText('time'));
    await user.click(within(c1).getByLabelText('unixs'));
    await user.type(screen.getByLabelText('Column 2 selector'), 'v');
    const c2 = screen.getByTestId('column-2');
    await user.click(within(c2).getByLabelText('number'));
    expect(state.latest.columns).toEqual([
      { selector: 'ts', name: 'Time', type: 'time', timeFormat: 'unixs' },
      { selector: 'v', type: 'number' },
    ]);
    // a type other than time drops the time format
    await user.click(within(c1).getByLabelText('string'));
    expect(state.latest.columns?.[0]).toEqual({ selector: 'ts', name: 'Time', type: 'string' });
    await user.click(screen.getByRole('button', { name: 'Remove column 1' }));
    await user.click(screen.getByRole('button', { name: 'Remove column 1' }));
    expect('columns' in state.latest).toBe(false);
  });
});
