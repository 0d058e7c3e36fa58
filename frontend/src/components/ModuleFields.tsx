/*
 * ModuleFields.tsx - the loadable auth module (authModule) and its JSON configuration: a plain
 * part in jsonData authModuleConfig and a secret part in secureJsonData authModuleConfig, whose
 * keys the plugin merges over the plain ones.
 */
import React, { useState } from 'react';
import { css } from '@emotion/css';

import { Field, TextArea, useStyles2 } from '@grafana/ui';

import { SecretField, TextField } from './fields';
import { Settings, isConfigured, pendingSecret, resetSecure, setJson, setSecure } from './options';

interface Props {
  options: Settings;
  onChange: (o: Settings) => void;
  /** authType module needs a module name */
  required?: boolean;
}

function configText(v: unknown): string {
  if (v === undefined || v === null) {
    return '';
  }
  return typeof v === 'string' ? v : JSON.stringify(v, null, 2);
}

/** The text as an object when it is one, else the text itself (the plugin reports the error). */
function configValue(text: string): Record<string, unknown> | string | undefined {
  if (!text.trim()) {
    return undefined;
  }
  try {
    const v = JSON.parse(text);
    if (v && typeof v === 'object' && !Array.isArray(v)) {
      return v;
    }
  } catch {
    // kept as text below
  }
  return text;
}

// as wide as its cols, like the secret text area beside it
const getStyles = () => ({ text: css({ width: 'auto', maxWidth: '100%' }) });

export function ModuleFields({ options, onChange, required }: Props) {
  const styles = useStyles2(getStyles);
  const jd = options.jsonData;
  // the text as typed: re-serialising on each key press would fight the cursor
  const [text, setText] = useState(() => configText(jd.authModuleConfig));
  const parsed = configValue(text);
  const invalid = typeof parsed === 'string';
  return (
    <>
      <TextField
        id="cp-authModule"
        label="Auth module"
        required={required}
        description="Module name: <name>.so in the operator's module directory (module_dir), never a path"
        placeholder="example"
        value={jd.authModule}
        invalid={jd.authModule !== undefined && /[/]|\.\./.test(jd.authModule)}
        error="A module name, not a path"
        onChange={(v) => onChange(setJson(options, 'authModule', v))}
      />
      <Field label="Module configuration" description="JSON object given to the module" invalid={invalid} error="Not a JSON object">
        <TextArea
          id="cp-authModuleConfig"
          className={styles.text}
          rows={4}
          cols={60}
          value={text}
          placeholder='{"tenant": "a"}'
          onChange={(e) => {
            setText(e.currentTarget.value);
            onChange(setJson(options, 'authModuleConfig', configValue(e.currentTarget.value)));
          }}
        />
      </Field>
      <SecretField
        id="cp-secureAuthModuleConfig"
        label="Module secrets"
        description="JSON object of secret keys, merged over the configuration"
        multiline
        configured={isConfigured(options, 'authModuleConfig')}
        value={pendingSecret(options, 'authModuleConfig')}
        placeholder='{"password": "..."}'
        onChange={(v) => onChange(setSecure(options, 'authModuleConfig', v))}
        onReset={() => onChange(resetSecure(options, 'authModuleConfig'))}
      />
    </>
  );
}
