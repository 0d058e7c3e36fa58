/*
 * TlsSection.tsx - TLS towards the upstream, in Grafana's convention: tlsSkipVerify,
 * tlsAuthWithCACert with secure tlsCACert, tlsAuth with secure tlsClientCert and tlsClientKey.
 */
import React from 'react';

import { SecretField, SwitchField } from './fields';
import { Settings, isConfigured, pendingSecret, resetSecure, setJson, setSecure } from './options';
import { CachingProxySecureData } from '../types';

interface Props {
  options: Settings;
  onChange: (o: Settings) => void;
}

export function TlsSection({ options, onChange }: Props) {
  const jd = options.jsonData;
  const pem = (key: keyof CachingProxySecureData, label: string, placeholder: string) => (
    <SecretField
      id={`cp-${key}`}
      label={label}
      multiline
      placeholder={placeholder}
      configured={isConfigured(options, key)}
      value={pendingSecret(options, key)}
      onChange={(v) => onChange(setSecure(options, key, v))}
      onReset={() => onChange(resetSecure(options, key))}
    />
  );
  return (
    <>
      <SwitchField
        id="cp-tlsSkipVerify"
        label="Skip TLS certificate verification"
        description="Also for the OAuth2 token and external authorization requests. Not for production."
        value={Boolean(jd.tlsSkipVerify)}
        onChange={(v) => onChange(setJson(options, 'tlsSkipVerify', v || undefined))}
      />
      <SwitchField
        id="cp-tlsAuthWithCACert"
        label="With CA certificate"
        description="Verify the upstream against this CA instead of the system's"
        value={Boolean(jd.tlsAuthWithCACert)}
        onChange={(v) => onChange(setJson(options, 'tlsAuthWithCACert', v || undefined))}
      />
      {jd.tlsAuthWithCACert && pem('tlsCACert', 'CA certificate', '-----BEGIN CERTIFICATE-----')}
      <SwitchField
        id="cp-tlsAuth"
        label="TLS client authentication"
        description="Present a client certificate to the upstream"
        value={Boolean(jd.tlsAuth)}
        onChange={(v) => onChange(setJson(options, 'tlsAuth', v || undefined))}
      />
      {jd.tlsAuth && (
        <>
          {pem('tlsClientCert', 'Client certificate', '-----BEGIN CERTIFICATE-----')}
          {pem('tlsClientKey', 'Client key', '-----BEGIN PRIVATE KEY-----')}
        </>
      )}
    </>
  );
}
